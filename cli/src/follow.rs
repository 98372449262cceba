//! `aggrelog follow`: follows a Kafka topic into one database per assigned partition under
//! `--db DIR` (the `aggrelog-kafka` crate), exactly once, until SIGTERM or SIGINT (which write
//! what was read, then exit 0). On a terminal a progress line shows deltas/s and the lag per
//! partition; `--json-status` prints one JSON line per interval to stdout instead.

use std::io::{self, IsTerminal};
use std::path::PathBuf;
use std::time::Duration;

use aggrelog::History;
use aggrelog_kafka::{Follower, FollowerConfig, Status, StopHandle};
use clap::Args;
use indicatif::ProgressBar;
use signal_hook::consts::{SIGINT, SIGTERM};

use crate::open::parse_history;
use crate::output::{emit, progress, Failure};

/// The options of `aggrelog follow`.
#[derive(Args, Debug)]
pub struct FollowArgs {
    /// Bootstrap brokers, HOST:PORT[,HOST:PORT...].
    #[arg(long)]
    brokers: String,
    /// The topic to follow: each record's value is one JSON Lines delta or several (applied
    /// atomically), its key the aggregate id.
    #[arg(long)]
    topic: String,
    /// The consumer group; its members split the topic's partitions.
    #[arg(long)]
    group: String,
    /// The follower directory: one database per partition, DIR/<topic>.<partition>/.
    #[arg(long)]
    db: PathBuf,
    /// Where malformed messages go, one JSON line each (default DIR/dead-letters.jsonl).
    #[arg(long, value_name = "FILE")]
    dead_letter: Option<PathBuf>,
    /// Print one JSON status line per interval to stdout: {"deltas":N,"deltas_per_s":X,
    /// "partitions":[{"partition","next_offset","high_watermark","lag","dead_letters"}]}.
    #[arg(long)]
    json_status: bool,
    /// Status interval in milliseconds.
    #[arg(long, value_name = "N", default_value = "1000")]
    interval_ms: u64,
    /// Write a partition's pending messages as one batch when they reach N messages.
    #[arg(long, value_name = "N", default_value = "10000")]
    max_batch_messages: usize,
    /// ... or N bytes of values.
    #[arg(long, value_name = "N", default_value = "4194304")]
    max_batch_bytes: usize,
    /// ... or when the oldest has waited MS milliseconds.
    #[arg(long, value_name = "MS", default_value = "200")]
    flush_ms: u64,
    /// A librdkafka consumer property KEY=VALUE (repeatable), such as security settings or
    /// session.timeout.ms.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// What compaction keeps unfolded in the partition databases: "none", "all" or N seqs. A
    /// message's batch (named topic/partition/offset) can be retracted while its deltas are.
    #[arg(long, value_name = "none|all|N", default_value = "none", value_parser = parse_history)]
    history: History,
}

fn parse_property(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_owned(), value.to_owned())),
        _ => Err(format!("{text:?} is not KEY=VALUE")),
    }
}

impl FollowArgs {
    fn config(&self) -> FollowerConfig {
        let mut config = FollowerConfig::new(&self.brokers, &self.topic, &self.group, &self.db);
        config.dead_letter = self.dead_letter.clone();
        config.max_batch_messages = self.max_batch_messages;
        config.max_batch_bytes = self.max_batch_bytes;
        config.flush_interval = Duration::from_millis(self.flush_ms);
        config.status_interval = Duration::from_millis(self.interval_ms.max(1));
        config.client_properties = self.kafka_properties.clone();
        config.history = self.history;
        config
    }
}

/// `follow`: runs the follower until a signal stops it.
pub fn follow(args: &FollowArgs) -> Result<(), Failure> {
    let follower = Follower::new(args.config())?;
    let stop = follower.stop_handle();
    on_signals(&stop)?;
    let bar = if args.json_status || !io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        progress(0, "following")
    };
    let last = follower.run(|status| {
        if args.json_status {
            if emit(status.to_json()).is_err() {
                stop.stop(); // stdout is closed: nobody reads the status any more
            }
        } else {
            bar.set_message(progress_line(status));
            bar.tick();
        }
    })?;
    bar.finish_and_clear();
    if !args.json_status {
        eprintln!("stopped: {}", progress_line(&last));
    }
    Ok(())
}

/// SIGTERM and SIGINT set the stop flag; a second one ends the process at once.
fn on_signals(stop: &StopHandle) -> Result<(), Failure> {
    for signal in [SIGTERM, SIGINT] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, stop.flag())?;
        signal_hook::flag::register(signal, stop.flag())?;
    }
    Ok(())
}

/// `1234 deltas/s, 56789 applied; lag p0=12 p1=0 p2=? (2 dead letters)`.
fn progress_line(status: &Status) -> String {
    let lags: Vec<String> = (status.partitions.iter())
        .map(|p| match p.lag {
            Some(lag) => format!("p{}={lag}", p.partition),
            None => format!("p{}=?", p.partition),
        })
        .collect();
    let dead: u64 = status.partitions.iter().map(|p| p.dead_letters).sum();
    let lag = if lags.is_empty() {
        "no partition assigned".to_owned()
    } else {
        format!("lag {}", lags.join(" "))
    };
    let dead = if dead > 0 {
        format!(" ({dead} dead letters)")
    } else {
        String::new()
    };
    format!(
        "{:.0} deltas/s, {} applied; {lag}{dead}",
        status.deltas_per_s, status.deltas
    )
}
