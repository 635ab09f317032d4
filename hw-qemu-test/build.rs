fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").unwrap();
    println!("cargo:rustc-link-arg=-T{dir}/../qemu-virt/link.x");
    println!("cargo:rerun-if-changed=../qemu-virt/link.x");
}
