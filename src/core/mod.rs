//! The routing core: the decision and the traits it needs from the world.
//! It imports none of tonic, sqlx, redis, async-nats or axum.

pub mod clock;
pub mod decide;
pub mod draw;
pub mod error;
pub mod health;
pub mod health_feed;
pub mod limits;
pub mod model;
pub mod numbering;
#[cfg(feature = "planted")]
pub mod planted;
pub mod ports;
pub mod prefix;
pub mod reload;
pub mod router;
pub mod sender;
pub mod table;
