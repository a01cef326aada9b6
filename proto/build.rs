//! Generates the lacquer.v1 messages and services with a vendored `protoc`,
//! so no machine needs one installed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protoc = protoc_bin_vendored::protoc_bin_path()?;
    let mut config = prost_build::Config::new();
    config.protoc_executable(protoc);
    let descriptors = std::path::PathBuf::from(std::env::var("OUT_DIR")?).join("lacquer_v1_descriptor.bin");
    tonic_prost_build::configure().file_descriptor_set_path(&descriptors).compile_with_config(
        config,
        &["lacquer/v1/lacquer.proto"],
        &["."],
    )?;
    Ok(())
}
