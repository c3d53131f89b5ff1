//! Helpers shared by the dispatcher's end-to-end test binaries.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use serde_json::Value;
use tickiti_testkit::{TestApp, TestOrg};

/// Long enough for any wait these tests make on a loaded machine.
pub const WAIT: Duration = Duration::from_secs(20);

/// `POST /webhooks`, which must answer 201; the endpoint as answered.
pub async fn create_endpoint(app: &TestApp, org: &TestOrg, body: Value) -> Value {
    let reply = app.post("/api/v1/webhooks", &org.token, body).await;
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.body
}
