//! Links the PDs at Microkit's layout.
fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg=-T{dir}/../../microkit/pd.ld");
    println!("cargo:rerun-if-changed=../../microkit/pd.ld");
}
