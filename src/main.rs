//! The `delivery-operator` binary: the command line is `delivery_operator::cli`.

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    delivery_operator::cli::main().await
}
