//! Generates the gRPC code for `proto/` with a vendored `protoc`, so that a
//! machine with nothing but Rust builds the service.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    std::env::set_var("PROTOC", protoc);

    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    tonic_build::configure()
        .file_descriptor_set_path(out_dir.join("routing_descriptor.bin"))
        .compile_protos(&["proto/routing/v1/routing.proto"], &["proto"])?;

    println!("cargo:rerun-if-changed=proto");
    Ok(())
}
