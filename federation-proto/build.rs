//! Compiles the .proto files in Rust (protox), so the build needs no system `protoc`.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/liandong/v1/cases.proto",
        "proto/liandong/v1/raft.proto",
        "proto/liandong/v1/admin.proto",
        "proto/liandong/v1/federation.proto",
        "proto/liandong/v1/officers.proto",
        "proto/liandong/v1/quiesce.proto",
        "proto/liandong/v1/desks.proto",
        "proto/liandong/v1/notices.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
