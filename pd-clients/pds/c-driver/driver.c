/*
 * An example C driver PD over the IOMMU server (the shape of an sDDF
 * driver): at init it binds its device (index 0 of its iommu.xml client),
 * gives it an IO address space, learns where IOVAs may go, and maps the
 * first page of its DMA buffer for the device to read and write; when the
 * server notifies it, it reads and reports its device's DMA faults.
 *
 * It takes the place of an edu driver PD of system.xml (edu_a): its entry
 * maps the command page, the device's configuration page, its BAR and the
 * DMA buffer with setvar_vaddr="command_page", "pci_config", "edu_regs"
 * and "dma_buffer"; its channel to the server comes from iommu_config.h,
 * generated for this PD from the system description (`cargo run -p sysgen
 * -- --c-config PD system.xml iommu.xml`). Built against the SDK's
 * libmicrokit (tests/c_header.rs links it when MICROKIT_SDK is set), or
 * against the stand-in microkit.h of pd-clients/c-host/standin/, with
 * which `make c-run` runs it on the host against the server core.
 */
#include <stdint.h>
#include <microkit.h>

#include "iommu_client.h"
#include "iommu_config.h"

#define SERVER IOMMU_SERVER_CHANNEL

/* Patched by the Microkit tool. The device's configuration page and BAR
 * are unused here: the device is only given DMA memory. */
uintptr_t command_page;
uintptr_t pci_config;
uintptr_t edu_regs;
uintptr_t dma_buffer;

static struct iommu_client iommu;
static uint32_t device, ioas;

static void put_hex(uint64_t v)
{
    char text[19] = "0x";
    for (int i = 0; i < 16; i++) {
        text[2 + i] = "0123456789abcdef"[(v >> (60 - 4 * i)) & 0xf];
    }
    text[18] = 0;
    microkit_dbg_puts(text);
}

/* A refusal: the request and what it was of, then the errno by name. */
static int failed(const char *request, const char *object, int err)
{
    microkit_dbg_puts("c_driver: FAILED - ");
    microkit_dbg_puts(request);
    microkit_dbg_puts(" of ");
    microkit_dbg_puts(object);
    microkit_dbg_puts(": ");
    microkit_dbg_puts(iommu_strerror(err));
    microkit_dbg_puts("\n");
    return err;
}

static int start(void)
{
    int err = iommu_bind(&iommu, 0, &device);
    if (err) {
        return failed("BIND", "device 0", err);
    }
    err = iommu_ioas_alloc(&iommu, &ioas);
    if (err) {
        return failed("IOAS_ALLOC", "an IO address space", err);
    }
    uint32_t hwpt = ioas;
    err = iommu_attach(&iommu, device, &hwpt);
    if (err) {
        return failed("ATTACH", "device 0 to its IO address space", err);
    }
    /* Room for a few ranges; EMSGSIZE would say how many there are. */
    struct iommu_iova_range ranges[8];
    uint32_t num = 8;
    uint64_t alignment = 0;
    err = iommu_iova_ranges(&iommu, ioas, ranges, &num, &alignment);
    if (err) {
        return failed("IOAS_IOVA_RANGES", "its IO address space", err);
    }
    uint64_t iova = 0;
    err = iommu_map(&iommu, ioas, dma_buffer, 0x1000,
                    IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, &iova);
    if (err) {
        return failed("MAP", "the DMA buffer's first page, for the device to read and write", err);
    }
    microkit_dbg_puts("c_driver: buffer mapped at IOVA ");
    put_hex(iova);
    microkit_dbg_puts("\n");
    return 0;
}

void init(void)
{
    iommu.server = SERVER;
    iommu.command_page = (volatile uint8_t *)command_page;
    start();
}

void notified(microkit_channel ch)
{
    if (ch != SERVER) {
        return;
    }
    struct iommu_fault_record rec;
    uint64_t remaining = 0;
    do {
        if (iommu_read_fault(&iommu, &rec, &remaining)) {
            return;
        }
        if (rec.out_flags & IOMMU_FAULT_RECORD_VALID) {
            microkit_dbg_puts("c_driver: DMA fault, kind ");
            put_hex(rec.kind);
            if (rec.out_flags & IOMMU_FAULT_RECORD_ADDR_VALID) {
                microkit_dbg_puts(rec.access & IOMMU_FAULT_ACCESS_WRITE ? " write at IOVA "
                                                                          : " read at IOVA ");
                put_hex(rec.iova);
            }
            microkit_dbg_puts("\n");
        }
        if (rec.out_flags & IOMMU_FAULT_RECORD_LOST) {
            microkit_dbg_puts("c_driver: the SMMU lost fault records\n");
        }
    } while (remaining > 0);
}
