//! Links a PD at Microkit's layout: the build script of every PD crate in
//! this workspace (each names this file as its `build`).
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg=-T{dir}/../../../microkit/pd.ld");
    println!("cargo:rerun-if-changed=../../../microkit/pd.ld");
}
