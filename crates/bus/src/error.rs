//! The bus error type.

use std::time::Duration;

use lapin::types::ShortStringError;

/// Why a bus operation failed; a publish error means "not confirmed, retry later".
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// No connection to the broker right now (still connecting, or reconnecting).
    #[error("not connected to the message broker")]
    NotConnected,
    /// Connecting to the broker (or declaring the exchanges on connect) failed.
    #[error("connecting to the message broker failed")]
    Connect(#[source] lapin::Error),
    /// Opening or setting up a channel failed.
    #[error("could not open a channel on the broker connection")]
    Channel(#[source] lapin::Error),
    /// Sending a message to the broker failed (channel or connection closed).
    #[error("publishing to exchange {exchange:?} failed")]
    Publish {
        /// The exchange we published to.
        exchange: String,
        /// What lapin reported.
        #[source]
        source: lapin::Error,
    },
    /// The confirm for a published message never came (channel or connection closed).
    #[error("waiting for the broker's publisher confirm failed")]
    Confirm(#[source] lapin::Error),
    /// The broker negatively acknowledged messages (it could not take responsibility for them).
    #[error("the broker nacked {nacked} of {total} messages")]
    Nacked {
        /// How many were nacked.
        nacked: usize,
        /// How many were in the batch.
        total: usize,
    },
    /// The broker returned messages that no queue took (published `mandatory`).
    #[error("{returned} of {total} messages published to {exchange:?} reached no queue")]
    Unroutable {
        /// The exchange we published to.
        exchange: String,
        /// How many came back.
        returned: usize,
        /// How many were in the batch.
        total: usize,
    },
    /// The channel was not in confirm mode, so nothing was confirmed (a bug, never expected).
    #[error("the publisher channel is not in confirm mode")]
    ConfirmsNotEnabled,
    /// The broker did not answer in time (e.g. a blocked connection, a black-holed host).
    #[error("the message broker did not answer within {0:?}")]
    Timeout(Duration),
    /// A name is not a valid AMQP short string (longer than 255 bytes).
    #[error("invalid AMQP {field} name")]
    InvalidName {
        /// Which name: exchange, routing key, queue, header…
        field: &'static str,
        /// The length problem.
        #[source]
        source: ShortStringError,
    },
    /// Declaring or deleting exchanges, queues or bindings failed.
    #[error("declaring or deleting broker topology failed")]
    Topology(#[source] lapin::Error),
}
