//! `aggrelog refs declare`, `aggrelog refs` and `aggrelog dangling` (DESIGN.md, section 6c):
//! declaring reference fields, and the references the engine reports instead of rejecting.
//!
//! ```text
//! refs declare --db DIR POINTER...  {"declared":[POINTER,...]}     every pointer declared now
//! refs --db DIR ID                  {"aggregate":ID,"outgoing":[{"pointer":P,"target":T}],
//!                                    "incoming":[{"aggregate":A,"pointer":P}]}
//! dangling --db DIR                 {"aggregate":A,"pointer":P,"target":T} per reference to an
//!                                    absent aggregate, sorted; nothing when there is none
//! ```

use aggrelog::{Db, Options};
use clap::{Args, Subcommand};
use serde_json::json;

use crate::follower_dir;
use crate::open::{open_reader, open_writer, DbArgs};
use crate::output::{emit, emit_lines, Failure};

/// `refs`: an aggregate's references, or `refs declare`.
#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RefsArgs {
    #[command(subcommand)]
    pub declare: Option<RefsCommand>,
    #[command(flatten)]
    pub db: Option<DbArgs>,
    /// Aggregate id.
    #[arg(required = true)]
    pub id: Option<String>,
}

/// The subcommand of `refs`.
#[derive(Subcommand, Debug)]
pub enum RefsCommand {
    /// Declare reference fields (JSON pointers, `*` for any key or index), creating the
    /// database if needed; prints {"declared":[...]}, every pointer declared now.
    Declare {
        #[command(flatten)]
        db: DbArgs,
        /// JSON pointers such as /parent or /components/*/ref.
        #[arg(required = true, value_name = "POINTER")]
        pointers: Vec<String>,
    },
}

/// `refs` or `refs declare`.
pub fn refs(args: &RefsArgs) -> Result<(), Failure> {
    match (&args.declare, &args.db, &args.id) {
        (Some(RefsCommand::Declare { db, pointers }), _, _) => declare(db, pointers),
        (None, Some(db), Some(id)) => print_references(db, id),
        _ => Err(Failure::new("refs needs --db DIR and an aggregate id")),
    }
}

fn declare(args: &DbArgs, pointers: &[String]) -> Result<(), Failure> {
    refuse_follower_dir(args)?;
    let options = Options::default()
        .background_compaction(false)
        .checkpoint_every_bytes(0);
    let db = open_writer(&args.db, args.apply(options), args.lock_wait)?;
    let pointers: Vec<&str> = pointers.iter().map(String::as_str).collect();
    db.declare_references(&pointers)?;
    let declared = db.declared_references();
    db.close()?;
    emit(json!({ "declared": declared }))
}

/// Opens one database to read; a follower's directory holds one per partition, and references
/// cross partitions, so it is refused.
fn open_one(args: &DbArgs) -> Result<Db, Failure> {
    refuse_follower_dir(args)?;
    open_reader(args)
}

/// Fails on a follower's directory: it holds one database per partition, and references cross
/// them (declaring there would also create a stray database beside them).
fn refuse_follower_dir(args: &DbArgs) -> Result<(), Failure> {
    match follower_dir::detect(&args.db)? {
        Some(_) => Err(Failure::new(format!(
            "{} is a follower's directory: references cross its partition databases, which \
             refs, refs declare and dangling do not join; give one partition database",
            args.db.display()
        ))),
        None => Ok(()),
    }
}

fn print_references(args: &DbArgs, id: &str) -> Result<(), Failure> {
    let db = open_one(args)?;
    let refs = db.references(id)?;
    let outgoing: Vec<_> = (refs.outgoing.iter())
        .map(|r| json!({"pointer": r.pointer, "target": r.target}))
        .collect();
    let incoming: Vec<_> = (refs.incoming.iter())
        .map(|r| json!({"aggregate": r.aggregate, "pointer": r.pointer}))
        .collect();
    emit(json!({"aggregate": id, "outgoing": outgoing, "incoming": incoming}))
}

/// `dangling`.
pub fn dangling(args: &DbArgs) -> Result<(), Failure> {
    let db = open_one(args)?;
    let lines = (db.dangling()?.into_iter())
        .map(|r| json!({"aggregate": r.aggregate, "pointer": r.pointer, "target": r.target}));
    emit_lines(lines)
}
