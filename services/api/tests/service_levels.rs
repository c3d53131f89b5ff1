//! Service levels (CONTRACT §7): business calendars, managed by admins.
#![allow(clippy::unwrap_used)]

use serde_json::json;
use sqlx::PgPool;
use tickiti_domain::{Ability, Role};
use tickiti_testkit::TestApp;

fn office() -> serde_json::Value {
    json!({
        "name": "Helsinki office",
        "time_zone": "Europe/Helsinki",
        "hours": [
            { "weekday": "mon", "start": "09:00", "end": "12:00" },
            { "weekday": "mon", "start": "13:00", "end": "17:00" },
            { "weekday": "sat", "start": "20:00", "end": "24:00" }
        ],
        "holidays": [{ "date": "2026-12-24", "name": "Christmas Eve" }]
    })
}

#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn admins_manage_business_calendars(db: PgPool) {
    let app = TestApp::spawn(db).await;
    let org = app.org("Acme").await;
    let created = app
        .post("/api/v1/business-calendars", &org.token, office())
        .await;
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.body["time_zone"], "Europe/Helsinki");
    assert_eq!(created.body["hours"].as_array().unwrap().len(), 3);
    assert_eq!(created.body["hours"][2]["end"], "24:00");
    assert_eq!(created.body["holidays"][0]["name"], "Christmas Eve");
    let path = format!(
        "/api/v1/business-calendars/{}",
        created.body["id"].as_str().unwrap()
    );

    assert_eq!(app.get(&path, &org.token).await.body, created.body);
    let listed = app.get("/api/v1/business-calendars", &org.token).await;
    assert_eq!(listed.body["data"].as_array().unwrap().len(), 1);

    let patched = app
        .patch(
            &path,
            &org.token,
            json!({ "time_zone": "America/New_York", "holidays": [] }),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.body);
    assert_eq!(patched.body["time_zone"], "America/New_York");
    assert_eq!(patched.body["holidays"], json!([]));
    assert_eq!(
        patched.body["hours"], created.body["hours"],
        "what the patch left out stays"
    );

    let taken = app
        .post("/api/v1/business-calendars", &org.token, office())
        .await;
    assert_eq!((taken.status, taken.code()), (409, "CALENDAR_NAME_TAKEN"));
    let mut berlin = office();
    berlin["name"] = json!("Berlin office");
    let berlin = app
        .post("/api/v1/business-calendars", &org.token, berlin)
        .await;
    assert_eq!(berlin.status, 201);
    let renamed = app
        .patch(&path, &org.token, json!({ "name": "BERLIN OFFICE" }))
        .await;
    assert_eq!(
        (renamed.status, renamed.code()),
        (409, "CALENDAR_NAME_TAKEN")
    );

    // Agents cannot see or change them; another organization sees nothing.
    let (_, _, agent) = app.user(&org, "Bob", Role::Agent, &[Ability::All]).await;
    assert_eq!(
        app.get("/api/v1/business-calendars", &agent).await.status,
        403
    );
    let other = app.org("Other").await;
    assert_eq!(
        app.get(&path, &other.token).await.code(),
        "CALENDAR_NOT_FOUND"
    );

    assert_eq!(app.delete(&path, &org.token).await.status, 204);
    assert_eq!(app.get(&path, &org.token).await.status, 404);
}

/// Each bad calendar is a 422 naming the field, and nothing is stored.
#[sqlx::test(migrator = "tickiti_store::MIGRATOR")]
async fn bad_calendars_are_refused_and_change_nothing(db: PgPool) {
    let app = TestApp::spawn(db.clone()).await;
    let org = app.org("Acme").await;
    let with = |field: &str, value: serde_json::Value| {
        let mut body = office();
        body[field] = value;
        body
    };
    let cases = [
        ("time_zone", with("time_zone", json!("Mars/Olympus"))),
        (
            "hours",
            with(
                "hours",
                json!([{ "weekday": "tue", "start": "17:00", "end": "09:00" }]),
            ),
        ),
        (
            "hours",
            with(
                "hours",
                json!([
                    { "weekday": "tue", "start": "09:00", "end": "13:00" },
                    { "weekday": "tue", "start": "12:00", "end": "17:00" }
                ]),
            ),
        ),
        (
            "hours[0].start",
            with(
                "hours",
                json!([{ "weekday": "tue", "start": "9am", "end": "17:00" }]),
            ),
        ),
        (
            "hours[0].start",
            with(
                "hours",
                json!([{ "weekday": "tue", "start": "24:00", "end": "24:00" }]),
            ),
        ),
        (
            "holidays[0].date",
            with("holidays", json!([{ "date": "2026-02-30" }])),
        ),
        ("name", with("name", json!(" "))),
    ];
    for (field, body) in cases {
        let reply = app
            .post("/api/v1/business-calendars", &org.token, body.clone())
            .await;
        assert_eq!(
            (reply.status, reply.code()),
            (422, "VALIDATION_FAILED"),
            "{body}: {}",
            reply.body
        );
        let fields: Vec<&str> = reply.body["errors"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert!(fields.contains(&field), "{field} in {fields:?} for {body}");
    }
    let unknown_weekday = app
        .post(
            "/api/v1/business-calendars",
            &org.token,
            with(
                "hours",
                json!([{ "weekday": "someday", "start": "09:00", "end": "17:00" }]),
            ),
        )
        .await;
    assert_eq!(unknown_weekday.status, 422, "{}", unknown_weekday.body);
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM business_calendars")
        .fetch_one(&db)
        .await
        .unwrap();
    assert_eq!(stored, 0);
}
