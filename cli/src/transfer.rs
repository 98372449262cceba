//! `export` and `import`: the log as JSON Lines and back (the library's `Db::export` and
//! `Db::import`; the format is in README.md).

use std::fs::OpenOptions;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use aggrelog::{Options, TransferReport};
use serde_json::json;

use crate::input::{open_input, preflight};
use crate::open::{open_reader, open_writer, DbArgs};
use crate::output::{progress, Failure};

/// `export`: read beside a writer, written to FILE or stdout; the counts on stderr.
pub fn export(args: &DbArgs, file: Option<&Path>) -> Result<(), Failure> {
    let db = open_reader(args)?;
    let spinner = progress(0, "exporting");
    spinner.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = match file {
        Some(path) => {
            let out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
                .map_err(|e| format!("{}: cannot create: {e}", path.display()))?;
            let mut out = BufWriter::with_capacity(1 << 20, out);
            let report = db.export(&mut out)?;
            out.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_all())
                .map_err(|e| format!("{}: {e}", path.display()))?;
            report
        }
        None => {
            let mut out = BufWriter::with_capacity(1 << 20, io::stdout().lock());
            let report = db.export(&mut out).map_err(closed_pipe)?;
            out.flush()?;
            report
        }
    };
    spinner.finish_and_clear();
    eprintln!("exported {}", counts(&report));
    Ok(())
}

/// `import`: a new database from exports, in order.
pub fn import(args: &DbArgs, files: &[String]) -> Result<(), Failure> {
    preflight(files)?;
    let options = Options::default().background_compaction(false);
    let db = open_writer(&args.db, args.apply(options), args.lock_wait)?;
    let mut total = TransferReport::default();
    for name in files {
        let report = db
            .import(&mut open_input(name)?)
            .map_err(|e| format!("{name}: {e}"))?;
        total.batches += report.batches;
        total.deltas += report.deltas;
        total.states += report.states;
        total.seals += report.seals;
    }
    db.close()?;
    eprintln!("imported {}", counts(&total));
    Ok(())
}

fn counts(report: &TransferReport) -> serde_json::Value {
    json!({
        "batches": report.batches,
        "deltas": report.deltas,
        "states": report.states,
        "seals": report.seals,
    })
}

/// An export cut short by a closed stdout is a quiet end, like any other command's.
fn closed_pipe(error: aggrelog::Error) -> Failure {
    match error {
        aggrelog::Error::Io { source, .. } => Failure::from(source),
        other => Failure::from(other),
    }
}
