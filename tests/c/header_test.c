/* Calls every function of pd-clients/include/iommu_client.h through the
 * stand-in microkit.h, whose protected calls tests/c_header.rs serves with
 * the real server core, and prints one `check` line per result for the
 * test to compare. The client is a manager with one device (index 0) and a
 * DMA region at 0x30000000, as the test configures it. It is C99 and C11
 * alike: the test compiles it as both. */
#include <stddef.h>
#include <string.h>

#include "iommu_client.h"

uint64_t stub_mrs[2];
volatile uint8_t stub_page[STUB_PAGE];

#define CHECK(name, err, fmt, ...) \
    printf("check %s err=%d " fmt "\n", name, err, __VA_ARGS__)

int main(void)
{
    /* The test configures the client's command page at this address. */
    printf("page %#llx\n", (unsigned long long)(uintptr_t)stub_page);
    fflush(stdout);
    struct iommu_client c = { .server = 0, .command_page = stub_page };
    int err;

    uint32_t dev = 0, ioas = 0, ioas2 = 0, pt, hwpt = 0;
    err = iommu_bind(&c, 0, &dev);
    CHECK("bind", err, "dev=%u", dev);
    err = iommu_ioas_alloc(&c, &ioas);
    CHECK("ioas_alloc", err, "ioas=%u", ioas);

    /* The two-call protocol: no room says how many there are. */
    struct iommu_iova_range ranges[8];
    uint32_t num = 0;
    uint64_t align = 0;
    err = iommu_iova_ranges(&c, ioas, ranges, &num, &align);
    CHECK("iova_ranges_sizing", err, "num=%u", num);
    num = 8;
    err = iommu_iova_ranges(&c, ioas, ranges, &num, &align);
    CHECK("iova_ranges", err, "num=%u start=%#llx last=%#llx align=%llu", num,
          (unsigned long long)ranges[0].start, (unsigned long long)ranges[0].last,
          (unsigned long long)align);

    pt = ioas;
    err = iommu_attach(&c, dev, &pt);
    CHECK("attach", err, "hwpt=%u", pt);
    num = 8;
    err = iommu_iova_ranges(&c, ioas, ranges, &num, &align);
    CHECK("iova_ranges_attached", err, "align=%llu", (unsigned long long)align);

    struct iommu_iova_range allowed = { .start = 0x100000, .last = 0x1fffff };
    err = iommu_allow_iovas(&c, ioas, &allowed, 1);
    CHECK("allow_iovas", err, "%s", "-");
    uint64_t iova = 0;
    err = iommu_map(&c, ioas, 0x30001000, 0x2000,
                    IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, &iova);
    CHECK("map", err, "iova=%#llx", (unsigned long long)iova);
    uint64_t fixed = 0x180000;
    err = iommu_map(&c, ioas, 0x30004000, 0x1000,
                    IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA, &fixed);
    CHECK("map_fixed", err, "iova=%#llx", (unsigned long long)fixed);

    err = iommu_ioas_alloc(&c, &ioas2);
    CHECK("ioas_alloc_2", err, "ioas=%u", ioas2);
    uint64_t copied = 0;
    err = iommu_copy(&c, ioas2, ioas, iova, 0x2000,
                     IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE, &copied);
    CHECK("copy", err, "iova=%#llx", (unsigned long long)copied);

    uint64_t huge = 9;
    err = iommu_option_get(&c, IOMMU_OPTION_HUGE_PAGES, ioas2, &huge);
    CHECK("option_get", err, "huge=%llu", (unsigned long long)huge);
    err = iommu_option_set(&c, IOMMU_OPTION_HUGE_PAGES, ioas2, 0);
    CHECK("option_set", err, "%s", "-");
    err = iommu_option_get(&c, IOMMU_OPTION_HUGE_PAGES, ioas2, &huge);
    CHECK("option_get_again", err, "huge=%llu", (unsigned long long)huge);

    err = iommu_hwpt_alloc(&c, dev, ioas2, 0, &hwpt);
    CHECK("hwpt_alloc", err, "hwpt=%u", hwpt);

    struct iommu_hw_info_arm_smmuv3 info;
    memset(&info, 0, sizeof(info));
    uint32_t len = sizeof(info), type = 99;
    uint64_t caps = 99;
    err = iommu_get_hw_info(&c, dev, &info, &len, &type, &caps);
    CHECK("hw_info", err, "len=%u type=%u caps=%llu", len, type, (unsigned long long)caps);

    uint64_t unmapped = 0x1000;
    err = iommu_unmap(&c, ioas, fixed, &unmapped);
    CHECK("unmap", err, "length=%#llx", (unsigned long long)unmapped);
    unmapped = UINT64_MAX;
    err = iommu_unmap(&c, ioas2, 0, &unmapped);
    CHECK("unmap_all", err, "length=%#llx", (unsigned long long)unmapped);

    struct iommu_fault_record rec;
    uint64_t remaining = 9;
    err = iommu_read_fault(&c, &rec, &remaining);
    CHECK("read_fault", err, "valid=%u remaining=%llu", rec.out_flags & IOMMU_FAULT_RECORD_VALID,
          (unsigned long long)remaining);
    /* Nothing stormed: resuming device 0 is a no-op; device 9 is none. */
    err = iommu_fault_resume(&c, 0);
    CHECK("fault_resume", err, "%s", "-");
    err = iommu_fault_resume(&c, 9);
    CHECK("fault_resume_nodev", err, "%s", "-");

    /* VFIO type1 over its own IOAS. */
    uint64_t version = 9, present = 9;
    err = vfio_get_api_version(&c, &version);
    CHECK("vfio_api_version", err, "version=%llu", (unsigned long long)version);
    err = vfio_check_extension(&c, VFIO_TYPE1v2_IOMMU, &present);
    CHECK("vfio_check_extension", err, "present=%llu", (unsigned long long)present);
    uint32_t compat = ioas2;
    err = iommu_vfio_ioas(&c, IOMMU_VFIO_IOAS_SET, &compat);
    CHECK("vfio_ioas_set", err, "%s", "-");
    compat = 0;
    err = iommu_vfio_ioas(&c, IOMMU_VFIO_IOAS_GET, &compat);
    CHECK("vfio_ioas_get", err, "same=%d", compat == ioas2);
    err = vfio_set_iommu(&c, VFIO_TYPE1v2_IOMMU);
    CHECK("vfio_set_iommu", err, "%s", "-");
    err = vfio_map_dma(&c, 0x30008000, 0x400000, 0x1000,
                       VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE);
    CHECK("vfio_map_dma", err, "%s", "-");
    union {
        struct vfio_iommu_type1_info info;
        uint8_t bytes[256];
    } vinfo;
    memset(&vinfo, 0, sizeof(vinfo));
    err = vfio_iommu_get_info(&c, &vinfo.info, sizeof(vinfo));
    uint32_t cap_id = 0;
    if (!err && (vinfo.info.flags & VFIO_IOMMU_INFO_CAPS) && vinfo.info.cap_offset) {
        struct vfio_info_cap_header header;
        memcpy(&header, vinfo.bytes + vinfo.info.cap_offset, sizeof(header));
        cap_id = header.id;
    }
    CHECK("vfio_get_info", err, "pgsizes=%d caps=%d first_cap=%u",
          (vinfo.info.flags & VFIO_IOMMU_INFO_PGSIZES) != 0, vinfo.info.cap_offset != 0, cap_id);
    uint64_t size = 0x1000;
    err = vfio_unmap_dma(&c, 0x400000, &size, 0);
    CHECK("vfio_unmap_dma", err, "size=%#llx", (unsigned long long)size);

    /* A manager's calls. */
    char text[64];
    uint32_t got = sizeof(text) - 1;
    uint64_t total = 0;
    err = iommu_dump(&c, IOMMU_DUMP_SERVER, 0, text, &got, &total);
    text[got] = 0;
    CHECK("dump", err, "got=%u more=%d head=%.7s", got, total > got, text);
    err = iommu_quarantine(&c, 7, 1);
    CHECK("quarantine_nobody", err, "%s", iommu_strerror(err));

    err = iommu_detach(&c, dev);
    CHECK("detach", err, "%s", "-");
    err = iommu_destroy(&c, hwpt);
    CHECK("destroy_hwpt", err, "%s", "-");
    err = iommu_destroy(&c, ioas);
    CHECK("destroy", err, "%s", "-");
    err = iommu_destroy(&c, ioas);
    CHECK("destroy_again", err, "%s", iommu_strerror(err));
    err = iommu_reset_client(&c, 0);
    CHECK("reset_self", err, "%s", "-");

    /* Every number iommu_strerror names; the test compares them with the
     * protocol's errnos. */
    for (int code = -1; code <= 200; code++) {
        if (strcmp(iommu_strerror(code), "unknown") != 0) {
            printf("strerror %d %s\n", code, iommu_strerror(code));
        }
    }
    printf("strerror_unknown %s %s %s\n", iommu_strerror(0), iommu_strerror(-22),
           iommu_strerror(100000));
    return 0;
}
