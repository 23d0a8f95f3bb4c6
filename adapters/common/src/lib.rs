//! What every protocol adapter shares with the core, and nothing more: the
//! [`Sink`] its events go into (resolving once they are durable), the
//! [`Shutdown`] signal, the [`Counters`] every adapter reports, and the
//! human units its config uses, and the wall clock events are stamped with. Adapters never see SQLite or MQTT.

pub mod clock;
pub mod counters;
pub mod sink;
pub mod testing;
pub mod units;

pub use counters::Counters;
pub use sink::{Refusal, RefusalReason, Shutdown, Sink};
pub use units::{ByteSize, HumanDuration};
