//! What every protocol adapter shares with the core, and nothing more: the
//! [`Adapter`] contract (open, then run with one [`Context`]), the
//! [`Resource`]s adapters claim, the [`Sink`] their events go into
//! (resolving once they are durable), [`Shutdown`], [`downlink`]s from the
//! core to devices, the [`Counters`] every adapter reports with typed
//! rejections, warnings limited to one per interval, the one rule for device ids, the human units their configs use, the wall clock events
//! are stamped with, one random-number generator, and test doubles.
//! Adapters never see SQLite or MQTT.

pub mod adapter;
pub mod clock;
pub mod counters;
pub mod device_id;
pub mod downlink;
pub mod log_limit;
pub mod random;
pub mod resource;
pub mod sink;
pub mod testing;
pub mod units;

pub use adapter::{
    Adapter, BoxFuture, Context, EventSink, OpenError, Opened, RunError, route_downlinks,
};
pub use counters::{Counters, Figures, Rejection, Stage};
pub use downlink::{Downlink, DownlinkError, DownlinkReceiver, DownlinkSender};
pub use log_limit::LogLimit;
pub use random::Random;
pub use resource::{Claim, Resource};
pub use sink::{
    Exchange, RecallError, Refusal, RefusalReason, Remembered, Shutdown, Sink, StateChange,
    StateEntry,
};
pub use units::{ByteSize, HumanDuration};
