/*
 * C client of the seL4 IOMMU server, for C driver PDs (sDDF drivers, say)
 * built against libmicrokit.
 *
 * One request is one protected call on the channel to the server: the
 * request struct goes at the start of the PD's command page (a page shared
 * only with the server), MR0 carries its size and MR1 the device for device
 * operations; the reply label is 0 or a positive Linux errno, and MR0 a
 * value for the operations that return one. The structs are laid out like
 * Linux's include/uapi/linux/iommufd.h and vfio.h (tests/c_header.rs
 * checks them against the Rust protocol crate). IDs are this client's own:
 * they mean nothing to any other PD.
 */
#ifndef IOMMU_CLIENT_H
#define IOMMU_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <microkit.h>

/* Operation labels: Linux's ioctl numbers, and two of this project's. */
#define IOMMU_OP_DESTROY 0x80
#define IOMMU_OP_IOAS_ALLOC 0x81
#define IOMMU_OP_IOAS_MAP 0x85
#define IOMMU_OP_IOAS_UNMAP 0x86
#define IOMMU_OP_HWPT_ALLOC 0x89
#define IOMMU_OP_DEVICE_BIND 118
#define IOMMU_OP_DEVICE_ATTACH 119
#define IOMMU_OP_DEVICE_DETACH 120
#define IOMMU_OP_FAULT_READ 0x100
#define IOMMU_OP_RESET_CLIENT 0x101
#define IOMMU_OP_QUARANTINE 0x102

#define IOMMU_IOAS_MAP_FIXED_IOVA (1u << 0)
#define IOMMU_IOAS_MAP_WRITEABLE (1u << 1)
#define IOMMU_IOAS_MAP_READABLE (1u << 2)

#define IOMMU_FAULT_RECORD_VALID (1u << 0)
#define IOMMU_FAULT_RECORD_ADDR_VALID (1u << 1)
#define IOMMU_FAULT_RECORD_LOST (1u << 2)

struct iommu_destroy {
    uint32_t size;
    uint32_t id;
};

struct iommu_ioas_alloc {
    uint32_t size;
    uint32_t flags;
    uint32_t out_ioas_id;
};

struct iommu_ioas_map {
    uint32_t size;
    uint32_t flags;
    uint32_t ioas_id;
    uint32_t reserved;
    uint64_t user_va;
    uint64_t length;
    uint64_t iova;
};

struct iommu_ioas_unmap {
    uint32_t size;
    uint32_t ioas_id;
    uint64_t iova;
    uint64_t length;
};

struct iommu_hwpt_alloc {
    uint32_t size;
    uint32_t flags;
    uint32_t dev_id;
    uint32_t pt_id;
    uint32_t out_hwpt_id;
    uint32_t reserved;
    uint32_t data_type;
    uint32_t data_len;
    uint64_t data_uptr;
    uint32_t fault_id;
    uint32_t reserved2;
};

struct vfio_device_bind_iommufd {
    uint32_t argsz;
    uint32_t flags;
    int32_t iommufd;
    uint32_t out_devid;
    uint64_t token_uuid_ptr;
};

struct vfio_device_attach_iommufd_pt {
    uint32_t argsz;
    uint32_t flags;
    uint32_t pt_id;
    uint32_t pasid;
};

struct vfio_device_detach_iommufd_pt {
    uint32_t argsz;
    uint32_t flags;
    uint32_t pasid;
};

struct iommu_fault_record {
    uint32_t size;
    uint32_t flags;
    uint32_t out_flags;
    uint32_t dev_id;
    uint32_t dev_index;
    uint32_t kind;
    uint64_t iova;
    uint32_t access;
    uint32_t reserved;
    uint64_t overflow;
};

/* The PD's link to the server. */
struct iommu_client {
    microkit_channel server;
    /* Where this PD maps its command page. */
    volatile uint8_t *command_page;
};

/*
 * Sends `req` (`size` bytes, MR1 = `mr1`) and copies it back with the
 * server's output fields. Returns 0 or a positive errno; `*value` (if not
 * NULL) gets the reply's MR0.
 */
static inline int iommu_call(const struct iommu_client *c, uint64_t label, void *req,
                             size_t size, uint64_t mr1, uint64_t *value)
{
    uint8_t *bytes = (uint8_t *)req;
    for (size_t i = 0; i < size; i++) {
        c->command_page[i] = bytes[i];
    }
    microkit_mr_set(0, size);
    microkit_mr_set(1, mr1);
    microkit_msginfo reply = microkit_ppcall(c->server, microkit_msginfo_new(label, 2));
    int err = (int)microkit_msginfo_get_label(reply);
    for (size_t i = 0; i < size; i++) {
        bytes[i] = c->command_page[i];
    }
    if (value) {
        *value = microkit_mr_get(0);
    }
    return err;
}

static inline int iommu_ioas_alloc(const struct iommu_client *c, uint32_t *ioas_id)
{
    struct iommu_ioas_alloc req = { .size = sizeof(req) };
    int err = iommu_call(c, IOMMU_OP_IOAS_ALLOC, &req, sizeof(req), 0, NULL);
    if (!err) {
        *ioas_id = req.out_ioas_id;
    }
    return err;
}

static inline int iommu_destroy(const struct iommu_client *c, uint32_t id)
{
    struct iommu_destroy req = { .size = sizeof(req), .id = id };
    return iommu_call(c, IOMMU_OP_DESTROY, &req, sizeof(req), 0, NULL);
}

/*
 * Maps `length` bytes at `vaddr` (this PD's address, inside one of its DMA
 * regions) for reading and/or writing by devices: at `*iova` when `flags`
 * has IOMMU_IOAS_MAP_FIXED_IOVA, else wherever the server finds room,
 * which it returns in `*iova`.
 */
static inline int iommu_map(const struct iommu_client *c, uint32_t ioas_id, uint64_t vaddr,
                            uint64_t length, uint32_t flags, uint64_t *iova)
{
    struct iommu_ioas_map req = {
        .size = sizeof(req),
        .flags = flags,
        .ioas_id = ioas_id,
        .user_va = vaddr,
        .length = length,
        .iova = *iova,
    };
    int err = iommu_call(c, IOMMU_OP_IOAS_MAP, &req, sizeof(req), 0, NULL);
    if (!err) {
        *iova = req.iova;
    }
    return err;
}

static inline int iommu_unmap(const struct iommu_client *c, uint32_t ioas_id, uint64_t iova,
                              uint64_t length)
{
    struct iommu_ioas_unmap req = {
        .size = sizeof(req), .ioas_id = ioas_id, .iova = iova, .length = length
    };
    return iommu_call(c, IOMMU_OP_IOAS_UNMAP, &req, sizeof(req), 0, NULL);
}

/* Binds the device at `index` of this PD's configuration (iommu.xml). */
static inline int iommu_bind(const struct iommu_client *c, uint32_t index, uint32_t *dev_id)
{
    struct vfio_device_bind_iommufd req = { .argsz = sizeof(req) };
    int err = iommu_call(c, IOMMU_OP_DEVICE_BIND, &req, sizeof(req), index, NULL);
    if (!err) {
        *dev_id = req.out_devid;
    }
    return err;
}

/* Attaches a device to an IOAS or HWPT; `*pt_id` becomes the HWPT used. */
static inline int iommu_attach(const struct iommu_client *c, uint32_t dev_id, uint32_t *pt_id)
{
    struct vfio_device_attach_iommufd_pt req = { .argsz = sizeof(req), .pt_id = *pt_id };
    int err = iommu_call(c, IOMMU_OP_DEVICE_ATTACH, &req, sizeof(req), dev_id, NULL);
    if (!err) {
        *pt_id = req.pt_id;
    }
    return err;
}

static inline int iommu_detach(const struct iommu_client *c, uint32_t dev_id)
{
    struct vfio_device_detach_iommufd_pt req = { .argsz = sizeof(req) };
    return iommu_call(c, IOMMU_OP_DEVICE_DETACH, &req, sizeof(req), dev_id, NULL);
}

/*
 * Reads the oldest queued DMA fault into `*rec` (rec->out_flags has
 * IOMMU_FAULT_RECORD_VALID when there was one); `*remaining` gets how many
 * are still queued.
 */
static inline int iommu_read_fault(const struct iommu_client *c, struct iommu_fault_record *rec,
                                   uint64_t *remaining)
{
    struct iommu_fault_record req = { .size = sizeof(req) };
    int err = iommu_call(c, IOMMU_OP_FAULT_READ, &req, sizeof(req), 0, remaining);
    *rec = req;
    return err;
}

/* Resets client `target` (a manager), or this PD itself (close). */
static inline int iommu_reset_client(const struct iommu_client *c, uint64_t target)
{
    microkit_mr_set(0, target);
    microkit_mr_set(1, 0);
    microkit_msginfo reply =
        microkit_ppcall(c->server, microkit_msginfo_new(IOMMU_OP_RESET_CLIENT, 2));
    return (int)microkit_msginfo_get_label(reply);
}

/* Holds (hold = 1) client `target`'s devices in quarantine, or releases
 * them (hold = 0): a manager only. */
static inline int iommu_quarantine(const struct iommu_client *c, uint64_t target, uint64_t hold)
{
    microkit_mr_set(0, target);
    microkit_mr_set(1, hold);
    microkit_msginfo reply =
        microkit_ppcall(c->server, microkit_msginfo_new(IOMMU_OP_QUARANTINE, 2));
    return (int)microkit_msginfo_get_label(reply);
}

#endif /* IOMMU_CLIENT_H */
