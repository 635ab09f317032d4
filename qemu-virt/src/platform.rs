//! QEMU virt, bare metal at EL1 with the MMU off: boot code, exception
//! vectors, PL011 output, semihosting exit, the generic timer and the
//! device windows. With the MMU off, virtual = physical.
#![allow(unsafe_code)]

use core::fmt::{self, Write};

use mmio::{ConstStaticCell, Mmio};

pub const SMMU_BASE: usize = 0x0905_0000;
pub const SMMU_SIZE: usize = 0x2_0000;
/// High PCIe ECAM (highmem on, 44-bit PA with cortex-a57); bus 0 only.
/// The address map is qemu-virt-layout's, which sysgen checks system.xml
/// against.
pub const ECAM_BASE: usize = qemu_virt_layout::ECAM_BASE as usize;
pub const ECAM_BUS0_SIZE: usize = 1 << 20;
/// The 32-bit PCI MMIO window; CPU and PCI addresses are identical.
pub const PCI_MMIO_BASE: usize = qemu_virt_layout::PCI_MMIO_BASE as usize;
const UART_BASE: usize = 0x0900_0000;

core::arch::global_asm!(
    r#"
    .section .text.boot, "ax"
    .global _start
_start:
    mrs x0, cpacr_el1
    orr x0, x0, #(3 << 20)
    msr cpacr_el1, x0
    isb
    adrp x0, vectors
    add x0, x0, :lo12:vectors
    msr vbar_el1, x0
    isb
    ldr x0, =__stack_top
    mov sp, x0
    ldr x0, =__bss_start
    ldr x1, =__bss_end
1:  cmp x0, x1
    b.hs 2f
    str xzr, [x0], #8
    b 1b
2:  ldr x0, =__stack_bottom
    ldr x1, =__stack_top
    ldr x2, ={paint}
4:  cmp x0, x1
    b.hs 5f
    str x2, [x0], #8
    b 4b
5:  bl rust_main
3:  wfe
    b 3b

    .balign 2048
vectors:
    .rept 16
    .balign 128
    mrs x0, esr_el1
    mrs x1, elr_el1
    mrs x2, far_el1
    b rust_exception
    .endr
"#,
    paint = const STACK_PAINT,
);

/// What the boot code fills the empty stack with, so the deepest word
/// ever written shows.
const STACK_PAINT: u64 = 0x5717_c0de_5717_c0de;

extern "C" {
    static __stack_bottom: u8;
    static __stack_top: u8;
}

/// The stack's size and its high-water mark: the bytes between its top
/// and the deepest word ever written (the boot code painted it whole).
pub fn stack_use() -> (usize, usize) {
    // The linker script defines both symbols around the stack; only their
    // addresses are taken.
    let (bottom, top) = (
        core::ptr::addr_of!(__stack_bottom) as usize,
        core::ptr::addr_of!(__stack_top) as usize,
    );
    let mut at = bottom;
    // SAFETY: [bottom, top) is this image's stack, mapped and 8-aligned;
    // words below the deepest frame are read, never written.
    while at < top && unsafe { core::ptr::read_volatile(at as *const u64) } == STACK_PAINT {
        at += 8;
    }
    (top - bottom, top - at)
}

extern "Rust" {
    /// The image's entry point, defined by each image with
    /// [`image_main!`](crate::image_main); returns the exit status.
    fn image_main() -> u32;
}

#[no_mangle]
extern "C" fn rust_main() -> ! {
    // SAFETY: `image_main!` defines the symbol with this signature.
    exit(unsafe { image_main() })
}

/// Names the image's entry point: `image_main!(main)` with
/// `fn main() -> u32`.
#[macro_export]
macro_rules! image_main {
    ($f:path) => {
        #[allow(unsafe_code)]
        #[export_name = "image_main"]
        fn __image_main() -> u32 {
            $f()
        }
    };
}

#[no_mangle]
extern "C" fn rust_exception(esr: u64, elr: u64, far: u64) -> ! {
    let _ = writeln!(Uart, "\nexception: ESR={esr:#x} ELR={elr:#x} FAR={far:#x}");
    exit(100)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    let _ = writeln!(Uart, "\npanic: {info}");
    exit(101)
}

/// PL011 transmit, polled.
pub struct Uart;

impl Write for Uart {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            // SAFETY: the PL011 of QEMU virt lives at UART_BASE; FR (0x18)
            // and DR (0x00) are 32-bit registers, and nothing else uses it.
            unsafe {
                while core::ptr::read_volatile((UART_BASE + 0x18) as *const u32) & (1 << 5) != 0 {}
                core::ptr::write_volatile(UART_BASE as *mut u32, b as u32);
            }
        }
        Ok(())
    }
}

/// Ends the run through semihosting with `status` as QEMU's exit code.
pub fn exit(status: u32) -> ! {
    let block: [u64; 2] = [0x20026, status as u64]; // ADP_Stopped_ApplicationExit
    loop {
        // SAFETY: SYS_EXIT (0x18) reads the two-word block and does not
        // return when QEMU runs with -semihosting; without it the HLT traps
        // and the vector reports it.
        unsafe {
            core::arch::asm!("hlt #0xf000", inout("x0") 0x18u64 => _, in("x1") block.as_ptr(), options(nostack));
        }
    }
}

/// Generic timer ticks.
pub fn ticks() -> u64 {
    let t: u64;
    // SAFETY: reading the virtual counter has no side effects.
    unsafe { core::arch::asm!("isb; mrs {0}, cntvct_el0", out(reg) t, options(nomem, nostack)) };
    t
}

pub fn ticks_per_second() -> u64 {
    let f: u64;
    // SAFETY: reading the counter frequency has no side effects.
    unsafe { core::arch::asm!("mrs {0}, cntfrq_el0", out(reg) f, options(nomem, nostack)) };
    f
}

/// Handed out once each: the SMMU's registers and the device windows.
static SMMU_REGS: ConstStaticCell<()> = ConstStaticCell::new(());
static DEVICE_WINDOWS: ConstStaticCell<()> = ConstStaticCell::new(());

/// The size of the BAR windows enumeration gives (`pci::find`).
pub const BAR_WINDOW_SIZE: u64 = 0x10_0000;

/// The SMMU's register frame, the first time.
pub fn smmu_regs() -> Option<Mmio> {
    SMMU_REGS.take()?;
    // SAFETY: QEMU virt's SMMUv3 register frame, handed out once.
    Some(unsafe { Mmio::new(SMMU_BASE, SMMU_SIZE) })
}

pub use qemu_virt_layout::WindowRefused;

/// Device windows the board keeps track of.
pub const MAX_DEVICE_WINDOWS: usize = 32;

/// Hands out device windows (configuration pages and BAR windows) where
/// the caller's configuration places them, after checking each against
/// the board; no two overlap, so each handle is the only one to its
/// registers.
pub struct DeviceWindows {
    taken: [(u64, u64); MAX_DEVICE_WINDOWS],
    len: usize,
}

/// The device windows, the first time.
pub fn device_windows() -> Option<DeviceWindows> {
    DEVICE_WINDOWS.take()?;
    Some(DeviceWindows {
        taken: [(0, 0); MAX_DEVICE_WINDOWS],
        len: 0,
    })
}

impl DeviceWindows {
    /// The configuration page at `paddr`, `size` bytes: one page of the
    /// ECAM window, overlapping no window handed out before.
    pub fn config_page(&mut self, paddr: u64, size: u64) -> Result<Mmio, WindowRefused> {
        qemu_virt_layout::check_config_page(paddr, size)?;
        self.claim(paddr, size)?;
        // SAFETY: one page of the ECAM window (checked), overlapping no
        // window handed out before (claimed just above); with the MMU off
        // an address is its physical address.
        Ok(unsafe { Mmio::new(paddr as usize, size as usize) })
    }

    /// The BAR window at `paddr`, `size` bytes: inside the PCI MMIO
    /// window, naturally aligned, overlapping no window handed out before.
    pub fn bar(&mut self, paddr: u64, size: u64) -> Result<Mmio, WindowRefused> {
        qemu_virt_layout::check_bar(paddr, size)?;
        self.claim(paddr, size)?;
        // SAFETY: a window of the 32-bit PCI MMIO range (checked),
        // overlapping no window handed out before (claimed just above).
        Ok(unsafe { Mmio::new(paddr as usize, size as usize) })
    }

    /// Marks `[paddr, paddr + size)` handed out, unless it overlaps a
    /// window handed out before.
    pub(crate) fn claim(&mut self, paddr: u64, size: u64) -> Result<(), WindowRefused> {
        let end = paddr.checked_add(size).ok_or(WindowRefused::Overlaps)?;
        if self.taken[..self.len]
            .iter()
            .any(|&(s, e)| s < end && paddr < e)
        {
            return Err(WindowRefused::Overlaps);
        }
        *self.taken.get_mut(self.len).ok_or(WindowRefused::TooMany)? = (paddr, end);
        self.len += 1;
        Ok(())
    }
}
