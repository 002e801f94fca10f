//! Compiles `proto/` with protox (a pure-Rust protobuf compiler), so no `protoc` is needed.

use std::path::PathBuf;

const FILES: &[&str] = &[
    "filedrop/v1/export.proto",
    "filedrop/v1/run.proto",
    "filedrop/v1/credential.proto",
    "filedrop/v1/destination.proto",
    "filedrop/jobs/v1/tasks.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?).join("../../proto");
    for file in FILES {
        println!("cargo:rerun-if-changed={}", root.join(file).display());
    }
    let descriptors = protox::compile(FILES, [&root])?;
    // The encoded descriptors, for gRPC server reflection.
    let out_dir = PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("filedrop_descriptors.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Holds a secret: its Debug is written by hand in lib.rs, and prints no secret.
        .skip_debug([".filedrop.v1.AccessKeyCredential"])
        .build_client(true)
        .build_server(true)
        .compile_fds(descriptors)?;
    Ok(())
}
