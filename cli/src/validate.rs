//! `aggrelog validate`: every live state checked against a JSON Schema, each violation reported
//! as `{"aggregate":ID,"pointer":P,"error":E}`. Nothing is rejected at ingest for it: in an
//! out-of-order world a state may be incomplete for a while, and rejecting is the failure the
//! engine exists to avoid; this reports where states stand.

use std::fs;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use serde_json::{json, Value};

use crate::open::DbArgs;
use crate::output::Failure;
use crate::read::databases;

/// Exit status when some state does not satisfy the schema.
const EXIT_INVALID: i32 = 1;

/// `validate`: prints one line per violation; exit 0 when every state is valid, 1 when some
/// are not, 2 when the schema or the database cannot be read.
pub fn validate(args: &DbArgs, schema_path: &Path) -> Result<(), Failure> {
    let in_schema = |e: String| Failure::new(format!("{}: {e}", schema_path.display()));
    let text = fs::read_to_string(schema_path).map_err(|e| in_schema(e.to_string()))?;
    let schema: Value =
        serde_json::from_str(&text).map_err(|e| in_schema(format!("not JSON: {e}")))?;
    let validator = jsonschema::validator_for(&schema)
        .map_err(|e| in_schema(format!("not a valid JSON Schema: {e}")))?;
    let mut out = BufWriter::new(io::stdout().lock());
    let (mut checked, mut invalid) = (0u64, 0u64);
    for db in databases(args)? {
        for item in db.scan() {
            let (id, state) = item?;
            checked += 1;
            let mut violations = validator.iter_errors(&state.state).peekable();
            invalid += u64::from(violations.peek().is_some());
            for error in violations {
                let pointer = error.instance_path().to_string();
                let line = json!({"aggregate": id, "pointer": pointer, "error": error.to_string()});
                writeln!(out, "{line}")?;
            }
        }
    }
    out.flush()?;
    if invalid == 0 {
        return Ok(());
    }
    Err(Failure {
        message: format!("{invalid} of {checked} aggregates do not satisfy the schema"),
        status: EXIT_INVALID,
    })
}
