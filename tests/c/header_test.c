/* Exercises pd-clients/include/iommu_client.h against the recording
 * microkit.h: prints the struct layouts and labels, then one line per
 * call for tests/c_header.rs to check and replay into the real server. */
#include <stddef.h>
#include <string.h>

#include "iommu_client.h"

uint64_t stub_mrs[2];
static uint8_t page[4096];
volatile uint8_t *stub_page = page;
void (*stub_reply)(volatile uint8_t *page, uint64_t *mr0);

static void put32(volatile uint8_t *p, size_t at, uint32_t v)
{
    for (int i = 0; i < 4; i++) p[at + i] = (uint8_t)(v >> (8 * i));
}

static void put64(volatile uint8_t *p, size_t at, uint64_t v)
{
    for (int i = 0; i < 8; i++) p[at + i] = (uint8_t)(v >> (8 * i));
}

/* What the server answers for this sequence (tests/c_header.rs checks). */
static void bound(volatile uint8_t *p, uint64_t *mr0) { (void)mr0; put32(p, offsetof(struct vfio_device_bind_iommufd, out_devid), 256); }
static void allocated(volatile uint8_t *p, uint64_t *mr0) { (void)mr0; put32(p, offsetof(struct iommu_ioas_alloc, out_ioas_id), 257); }
static void attached(volatile uint8_t *p, uint64_t *mr0) { (void)mr0; put32(p, offsetof(struct vfio_device_attach_iommufd_pt, pt_id), 258); }
static void mapped(volatile uint8_t *p, uint64_t *mr0) { (void)mr0; put64(p, offsetof(struct iommu_ioas_map, iova), 0x1000); }

#define SIZE(t) printf("size %s %zu\n", #t, sizeof(struct t))
#define OFFSET(t, f) printf("offset %s.%s %zu\n", #t, #f, offsetof(struct t, f))
#define LABEL(l) printf("label %s %d\n", #l, l)

int main(void)
{
    SIZE(iommu_destroy);
    SIZE(iommu_ioas_alloc);
    SIZE(iommu_ioas_map);
    SIZE(iommu_ioas_unmap);
    SIZE(iommu_hwpt_alloc);
    SIZE(vfio_device_bind_iommufd);
    SIZE(vfio_device_attach_iommufd_pt);
    SIZE(vfio_device_detach_iommufd_pt);
    SIZE(iommu_fault_record);
    OFFSET(iommu_ioas_map, user_va);
    OFFSET(iommu_ioas_map, iova);
    OFFSET(iommu_ioas_unmap, length);
    OFFSET(iommu_hwpt_alloc, data_uptr);
    OFFSET(iommu_hwpt_alloc, fault_id);
    OFFSET(vfio_device_bind_iommufd, token_uuid_ptr);
    OFFSET(iommu_fault_record, iova);
    OFFSET(iommu_fault_record, overflow);
    LABEL(IOMMU_OP_DESTROY);
    LABEL(IOMMU_OP_IOAS_ALLOC);
    LABEL(IOMMU_OP_IOAS_MAP);
    LABEL(IOMMU_OP_IOAS_UNMAP);
    LABEL(IOMMU_OP_HWPT_ALLOC);
    LABEL(IOMMU_OP_DEVICE_BIND);
    LABEL(IOMMU_OP_DEVICE_ATTACH);
    LABEL(IOMMU_OP_DEVICE_DETACH);
    LABEL(IOMMU_OP_FAULT_READ);
    LABEL(IOMMU_OP_RESET_CLIENT);
    LABEL(IOMMU_OP_QUARANTINE);

    struct iommu_client c = { .server = 0, .command_page = page };
    uint32_t dev = 0, ioas = 0, pt;
    uint64_t iova = 0, remaining = 0;
    struct iommu_fault_record rec;
    int err = 0;
    stub_reply = bound;
    err |= iommu_bind(&c, 0, &dev);
    stub_reply = allocated;
    err |= iommu_ioas_alloc(&c, &ioas);
    pt = ioas;
    stub_reply = attached;
    err |= iommu_attach(&c, dev, &pt);
    stub_reply = mapped;
    err |= iommu_map(&c, ioas, 0x30001000, 0x2000,
                     IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, &iova);
    err |= iommu_unmap(&c, ioas, iova, 0x2000);
    err |= iommu_read_fault(&c, &rec, &remaining);
    err |= iommu_detach(&c, dev);
    err |= iommu_destroy(&c, ioas);
    err |= iommu_reset_client(&c, 0);
    printf("results dev=%u ioas=%u hwpt=%u iova=%#llx valid=%u err=%d\n", dev, ioas, pt,
           (unsigned long long)iova, rec.out_flags & IOMMU_FAULT_RECORD_VALID, err);
    return 0;
}
