//! `cloister-bench`: a load generator for Matrix homeservers. It speaks the
//! plain Client-Server API over HTTP and depends on nothing of Cloister's,
//! so the same run can be pointed at Cloister, Synapse or any other server
//! and the figures compared (`scripts/bench-compare.sh` does that).
//!
//! Users register (or log in), join rooms spread evenly over them, and
//! long-poll `/sync` while they send Megolm-shaped `m.room.encrypted`
//! events; each event carries the generator's id and send time inside its
//! ciphertext, so every receiver can match it and time its delivery.

mod cli;
mod compare;
mod matrix;
mod memory;
mod payload;
mod procfs;
mod report;
mod run;
mod send;
mod setup;
mod stats;
mod sync;

use clap::Parser;

use crate::cli::{Args, Scenario};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if !args.compare.is_empty() {
        print!("{}", compare::table(&compare::load(&args.compare)?));
        return Ok(());
    }
    args.check()?;
    let (json, text) = match args.scenario {
        Scenario::Load => {
            let report = run::load(&args).await?;
            (serde_json::to_string_pretty(&report)?, report.to_text())
        }
        Scenario::Memory => {
            let report = memory::run(&args).await?;
            (serde_json::to_string_pretty(&report)?, report.to_text())
        }
    };
    if args.json {
        println!("{json}");
    } else {
        print!("{text}");
    }
    Ok(())
}
