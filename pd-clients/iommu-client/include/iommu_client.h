/*
 * C client of the seL4 IOMMU server, for C driver PDs (sDDF drivers, say)
 * built against libmicrokit: every operation the server serves.
 *
 * One request is one protected call on the channel to the server: the
 * request struct goes at the start of the PD's command page (a page shared
 * only with the server), MR0 carries its size and MR1 the device for device
 * operations; the reply label is 0 or a positive Linux errno, and MR0 a
 * value for the operations that return one. The structs, labels and
 * constants are in iommu_proto.h, generated from the Rust protocol crate
 * (`cargo run -p sysgen -- --c-header`; `make` writes it to
 * build/include/). IDs are this client's own: they mean nothing to any
 * other PD.
 *
 * Arrays a request points at (IOVA ranges, hardware data, dump text) travel
 * in the command page too, at IOMMU_ARRAY_AT; the server refuses pointers
 * outside the page with EFAULT. Every function returns 0 or an errno;
 * iommu_strerror(err) names it ("EINVAL") for messages.
 *
 * C99 or C11 and later (-std=c99 -pedantic and -std=c11 -pedantic compile
 * it without a warning); freestanding: it needs only stddef.h, stdint.h
 * and libmicrokit's microkit.h.
 */
#ifndef IOMMU_CLIENT_H
#define IOMMU_CLIENT_H

#include <stddef.h>
#include <stdint.h>
#include <microkit.h>

#include "iommu_proto.h"

#define IOMMU_COMMAND_PAGE 4096u
/* Where arrays go in the command page: after the largest request struct
 * that points at one. */
#define IOMMU_ARRAY_AT 64u
#define IOMMU_ARRAY_ROOM (IOMMU_COMMAND_PAGE - IOMMU_ARRAY_AT)
IOMMU_STATIC_ASSERT(sizeof(struct iommu_ioas_iova_ranges) <= IOMMU_ARRAY_AT, room_iova_ranges);
IOMMU_STATIC_ASSERT(sizeof(struct iommu_ioas_allow_iovas) <= IOMMU_ARRAY_AT, room_allow_iovas);
IOMMU_STATIC_ASSERT(sizeof(struct iommu_hw_info) <= IOMMU_ARRAY_AT, room_hw_info);
IOMMU_STATIC_ASSERT(sizeof(struct iommu_dump) <= IOMMU_ARRAY_AT, room_dump);

/* The PD's link to the server. */
struct iommu_client {
    microkit_channel server;
    /* Where this PD maps its command page. */
    volatile uint8_t *command_page;
};

static inline uint64_t iommu_page_va(const struct iommu_client *c, size_t offset)
{
    return (uint64_t)(uintptr_t)(c->command_page + offset);
}

static inline void iommu_page_write(const struct iommu_client *c, size_t at, const void *src,
                                    size_t len)
{
    const uint8_t *bytes = (const uint8_t *)src;
    for (size_t i = 0; i < len; i++) {
        c->command_page[at + i] = bytes[i];
    }
}

static inline void iommu_page_read(const struct iommu_client *c, size_t at, void *dst, size_t len)
{
    uint8_t *bytes = (uint8_t *)dst;
    for (size_t i = 0; i < len; i++) {
        bytes[i] = c->command_page[at + i];
    }
}

/*
 * Sends `req` (`size` bytes, MR1 = `mr1`) and copies it back with the
 * server's output fields. `*value` (if not NULL) gets the reply's MR0.
 */
static inline int iommu_call(const struct iommu_client *c, uint64_t label, void *req,
                             size_t size, uint64_t mr1, uint64_t *value)
{
    iommu_page_write(c, 0, req, size);
    microkit_mr_set(IOMMU_MR_SIZE, size);
    microkit_mr_set(IOMMU_MR_DEVICE, mr1);
    microkit_msginfo reply = microkit_ppcall(c->server, microkit_msginfo_new(label, 2));
    int err = (int)microkit_msginfo_get_label(reply);
    iommu_page_read(c, 0, req, size);
    if (value) {
        *value = microkit_mr_get(IOMMU_MR_VALUE);
    }
    return err;
}

/* A scalar operation: its argument in MR0 (and MR1), no struct. */
static inline int iommu_call_scalar(const struct iommu_client *c, uint64_t label, uint64_t arg,
                                    uint64_t arg1, uint64_t *value)
{
    microkit_mr_set(0, arg);
    microkit_mr_set(1, arg1);
    microkit_msginfo reply = microkit_ppcall(c->server, microkit_msginfo_new(label, 2));
    if (value) {
        *value = microkit_mr_get(IOMMU_MR_VALUE);
    }
    return (int)microkit_msginfo_get_label(reply);
}

/* ---- IO address spaces ---- */

static inline int iommu_ioas_alloc(const struct iommu_client *c, uint32_t *ioas_id)
{
    struct iommu_ioas_alloc req = { .size = sizeof(req) };
    int err = iommu_call(c, IOMMU_OP_IOAS_ALLOC, &req, sizeof(req), 0, NULL);
    if (!err) {
        *ioas_id = req.out_ioas_id;
    }
    return err;
}

/* Destroys any object of this client's (IOAS, HWPT, device). */
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

/* Unmaps the areas inside [iova, iova + *length); `*length` becomes the
 * bytes unmapped. (0, UINT64_MAX) unmaps everything. */
static inline int iommu_unmap(const struct iommu_client *c, uint32_t ioas_id, uint64_t iova,
                              uint64_t *length)
{
    struct iommu_ioas_unmap req = {
        .size = sizeof(req), .ioas_id = ioas_id, .iova = iova, .length = *length
    };
    int err = iommu_call(c, IOMMU_OP_IOAS_UNMAP, &req, sizeof(req), 0, NULL);
    if (!err) {
        *length = req.length;
    }
    return err;
}

/* Maps what [src_iova, src_iova + length) of `src_ioas` maps into
 * `dst_ioas`, at `*dst_iova` with IOMMU_IOAS_MAP_FIXED_IOVA, else where the
 * server finds room. */
static inline int iommu_copy(const struct iommu_client *c, uint32_t dst_ioas, uint32_t src_ioas,
                             uint64_t src_iova, uint64_t length, uint32_t flags,
                             uint64_t *dst_iova)
{
    struct iommu_ioas_copy req = {
        .size = sizeof(req),
        .flags = flags,
        .dst_ioas_id = dst_ioas,
        .src_ioas_id = src_ioas,
        .length = length,
        .dst_iova = *dst_iova,
        .src_iova = src_iova,
    };
    int err = iommu_call(c, IOMMU_OP_IOAS_COPY, &req, sizeof(req), 0, NULL);
    if (!err) {
        *dst_iova = req.dst_iova;
    }
    return err;
}

/*
 * The IOVA ranges usable in `ioas_id` and the alignment every IOVA and
 * length must have. The two-call protocol: `*num` is the capacity of
 * `ranges` in, the number of ranges out; when they do not fit, the result
 * is EMSGSIZE with `*num` the number needed (call again with room for
 * them). At most IOMMU_ARRAY_ROOM / 16 ranges travel in one call.
 */
static inline int iommu_iova_ranges(const struct iommu_client *c, uint32_t ioas_id,
                                    struct iommu_iova_range *ranges, uint32_t *num,
                                    uint64_t *alignment)
{
    const uint32_t room = IOMMU_ARRAY_ROOM / sizeof(struct iommu_iova_range);
    uint32_t capacity = *num < room ? *num : room;
    struct iommu_ioas_iova_ranges req = {
        .size = sizeof(req),
        .ioas_id = ioas_id,
        .num_iovas = capacity,
        .allowed_iovas = iommu_page_va(c, IOMMU_ARRAY_AT),
    };
    int err = iommu_call(c, IOMMU_OP_IOAS_IOVA_RANGES, &req, sizeof(req), 0, NULL);
    if (!err || err == IOMMU_EMSGSIZE) {
        *num = req.num_iovas;
        if (alignment) {
            *alignment = req.out_iova_alignment;
        }
    }
    if (!err) {
        iommu_page_read(c, IOMMU_ARRAY_AT, ranges, req.num_iovas * sizeof(*ranges));
    }
    return err;
}

/* Replaces the ranges automatic IOVAs may come from (none: all). More
 * ranges than fit in the command page are E2BIG here. */
static inline int iommu_allow_iovas(const struct iommu_client *c, uint32_t ioas_id,
                                    const struct iommu_iova_range *ranges, uint32_t num)
{
    if (num > IOMMU_ARRAY_ROOM / sizeof(struct iommu_iova_range)) {
        return IOMMU_E2BIG;
    }
    iommu_page_write(c, IOMMU_ARRAY_AT, ranges, num * sizeof(*ranges));
    struct iommu_ioas_allow_iovas req = {
        .size = sizeof(req),
        .ioas_id = ioas_id,
        .num_iovas = num,
        .allowed_iovas = iommu_page_va(c, IOMMU_ARRAY_AT),
    };
    return iommu_call(c, IOMMU_OP_IOAS_ALLOW_IOVAS, &req, sizeof(req), 0, NULL);
}

/* IOMMU_OPTION: IOMMU_OPTION_HUGE_PAGES of an IOAS (`object_id`), or
 * IOMMU_OPTION_RLIMIT_MODE (object 0). */
static inline int iommu_option_get(const struct iommu_client *c, uint32_t option,
                                   uint32_t object_id, uint64_t *value)
{
    struct iommu_option req = {
        .size = sizeof(req), .option_id = option, .op = IOMMU_OPTION_OP_GET, .object_id = object_id
    };
    int err = iommu_call(c, IOMMU_OP_OPTION, &req, sizeof(req), 0, NULL);
    if (!err) {
        *value = req.val64;
    }
    return err;
}

static inline int iommu_option_set(const struct iommu_client *c, uint32_t option,
                                   uint32_t object_id, uint64_t value)
{
    struct iommu_option req = {
        .size = sizeof(req),
        .option_id = option,
        .op = IOMMU_OPTION_OP_SET,
        .object_id = object_id,
        .val64 = value,
    };
    return iommu_call(c, IOMMU_OP_OPTION, &req, sizeof(req), 0, NULL);
}

/* IOMMU_VFIO_IOAS: get (into *ioas_id), set or clear the IOAS the VFIO
 * type1 calls act on. */
static inline int iommu_vfio_ioas(const struct iommu_client *c, uint16_t op, uint32_t *ioas_id)
{
    struct iommu_vfio_ioas req = { .size = sizeof(req), .ioas_id = *ioas_id, .op = op };
    int err = iommu_call(c, IOMMU_OP_VFIO_IOAS, &req, sizeof(req), 0, NULL);
    if (!err) {
        *ioas_id = req.ioas_id;
    }
    return err;
}

/* ---- Devices and hardware page tables ---- */

/* Binds the device at `index` of this PD's configuration (iommu.xml). */
static inline int iommu_bind(const struct iommu_client *c, uint32_t index, uint32_t *dev_id)
{
    struct vfio_device_bind_iommufd req = { .argsz = sizeof(req) };
    int err = iommu_call(c, IOMMU_OP_VFIO_DEVICE_BIND_IOMMUFD, &req, sizeof(req), index, NULL);
    if (!err) {
        *dev_id = req.out_devid;
    }
    return err;
}

/* Attaches a device to an IOAS or HWPT; `*pt_id` becomes the HWPT used. */
static inline int iommu_attach(const struct iommu_client *c, uint32_t dev_id, uint32_t *pt_id)
{
    struct vfio_device_attach_iommufd_pt req = { .argsz = sizeof(req), .pt_id = *pt_id };
    int err = iommu_call(c, IOMMU_OP_VFIO_DEVICE_ATTACH_IOMMUFD_PT, &req, sizeof(req), dev_id,
                         NULL);
    if (!err) {
        *pt_id = req.pt_id;
    }
    return err;
}

static inline int iommu_detach(const struct iommu_client *c, uint32_t dev_id)
{
    struct vfio_device_detach_iommufd_pt req = { .argsz = sizeof(req) };
    return iommu_call(c, IOMMU_OP_VFIO_DEVICE_DETACH_IOMMUFD_PT, &req, sizeof(req), dev_id, NULL);
}

/* A hardware page table for `dev_id` over IOAS `pt_id` (flags
 * IOMMU_HWPT_ALLOC_*). */
static inline int iommu_hwpt_alloc(const struct iommu_client *c, uint32_t dev_id, uint32_t pt_id,
                                   uint32_t flags, uint32_t *hwpt_id)
{
    struct iommu_hwpt_alloc req = {
        .size = sizeof(req), .flags = flags, .dev_id = dev_id, .pt_id = pt_id
    };
    int err = iommu_call(c, IOMMU_OP_HWPT_ALLOC, &req, sizeof(req), 0, NULL);
    if (!err) {
        *hwpt_id = req.out_hwpt_id;
    }
    return err;
}

/* IOMMU_GET_HW_INFO: the SMMUv3's ID registers behind `dev_id` into
 * `*data` (`*data_len` bytes in, bytes written out), its type and
 * capabilities. */
static inline int iommu_get_hw_info(const struct iommu_client *c, uint32_t dev_id,
                                    struct iommu_hw_info_arm_smmuv3 *data, uint32_t *data_len,
                                    uint32_t *data_type, uint64_t *capabilities)
{
    uint32_t len = *data_len < sizeof(*data) ? *data_len : (uint32_t)sizeof(*data);
    struct iommu_hw_info req = {
        .size = sizeof(req),
        .dev_id = dev_id,
        .data_len = len,
        .data_uptr = iommu_page_va(c, IOMMU_ARRAY_AT),
    };
    int err = iommu_call(c, IOMMU_OP_GET_HW_INFO, &req, sizeof(req), 0, NULL);
    if (!err) {
        uint32_t got = req.data_len < len ? req.data_len : len;
        iommu_page_read(c, IOMMU_ARRAY_AT, data, got);
        *data_len = req.data_len;
        *data_type = req.out_data_type;
        *capabilities = req.out_capabilities;
    }
    return err;
}

/* ---- Faults, reset, quarantine, dump ---- */

/*
 * Reads the oldest queued DMA fault into `*rec` (rec->out_flags has
 * IOMMU_FAULT_RECORD_VALID when there was one, IOMMU_FAULT_RECORD_LOST when
 * the SMMU lost records); `*remaining` gets how many are still queued.
 * rec->kind is an IOMMU_FAULT_KIND_*, rec->access IOMMU_FAULT_ACCESS_*.
 */
static inline int iommu_read_fault(const struct iommu_client *c, struct iommu_fault_record *rec,
                                   uint64_t *remaining)
{
    struct iommu_fault_record req = { .size = sizeof(req) };
    int err = iommu_call(c, IOMMU_OP_FAULT_READ, &req, sizeof(req), 0, remaining);
    *rec = req;
    return err;
}

/*
 * Records device `index`'s (configuration index) DMA faults again after it
 * stormed (IOMMU_FAULT_RECORD_STORMING, rec->silenced): EBUSY until this
 * PD's fault queue is drained and the server has handled the IOMMU's
 * backlog.
 */
static inline int iommu_fault_resume(const struct iommu_client *c, uint32_t index)
{
    return iommu_call_scalar(c, IOMMU_OP_FAULT_RESUME, index, 0, NULL);
}

/* Resets client `target` (a manager), or this PD itself (close). */
static inline int iommu_reset_client(const struct iommu_client *c, uint64_t target)
{
    return iommu_call_scalar(c, IOMMU_OP_RESET_CLIENT, target, 0, NULL);
}

/* Holds (hold = 1) client `target`'s devices in quarantine, or releases
 * them (hold = 0): a manager only. */
static inline int iommu_quarantine(const struct iommu_client *c, uint64_t target, uint64_t hold)
{
    return iommu_call_scalar(c, IOMMU_OP_QUARANTINE, target, hold, NULL);
}

/* A piece of the server's text report on client `target` (or
 * IOMMU_DUMP_SERVER), a manager only: bytes from `offset`, at most `*len`
 * into `buf`; `*len` becomes the bytes written, `*total` the report's
 * length. Read on from offset + *len while that is below *total. */
static inline int iommu_dump(const struct iommu_client *c, uint32_t target, uint64_t offset,
                             char *buf, uint32_t *len, uint64_t *total)
{
    uint32_t room = *len < IOMMU_ARRAY_ROOM ? *len : IOMMU_ARRAY_ROOM;
    struct iommu_dump req = {
        .size = sizeof(req),
        .target = target,
        .length = room,
        .offset = offset,
        .data_uptr = iommu_page_va(c, IOMMU_ARRAY_AT),
    };
    int err = iommu_call(c, IOMMU_OP_DUMP, &req, sizeof(req), 0, NULL);
    if (!err) {
        uint32_t got = req.length < room ? req.length : room;
        iommu_page_read(c, IOMMU_ARRAY_AT, buf, got);
        *len = got;
        *total = req.out_total;
    }
    return err;
}

/* ---- VFIO type1 ---- */

static inline int vfio_get_api_version(const struct iommu_client *c, uint64_t *version)
{
    return iommu_call_scalar(c, IOMMU_OP_VFIO_GET_API_VERSION, 0, 0, version);
}

/* `*present` becomes 1 when the extension (VFIO_TYPE1v2_IOMMU,
 * VFIO_DMA_CC_IOMMU, ...) is there. */
static inline int vfio_check_extension(const struct iommu_client *c, uint64_t extension,
                                       uint64_t *present)
{
    return iommu_call_scalar(c, IOMMU_OP_VFIO_CHECK_EXTENSION, extension, 0, present);
}

static inline int vfio_set_iommu(const struct iommu_client *c, uint64_t type)
{
    return iommu_call_scalar(c, IOMMU_OP_VFIO_SET_IOMMU, type, 0, NULL);
}

/* VFIO_IOMMU_GET_INFO into `info`, `argsz` bytes long (at most a command
 * page): the struct, then the capability chain the server writes after it
 * when argsz leaves room (info->cap_offset counts from `info`). */
static inline int vfio_iommu_get_info(const struct iommu_client *c,
                                      struct vfio_iommu_type1_info *info, uint32_t argsz)
{
    if (argsz > IOMMU_COMMAND_PAGE) {
        return IOMMU_E2BIG;
    }
    info->argsz = argsz;
    return iommu_call(c, IOMMU_OP_VFIO_IOMMU_GET_INFO, info, argsz, 0, NULL);
}

/* Maps `size` bytes at `vaddr` at `iova` of the VFIO IOAS
 * (VFIO_DMA_MAP_FLAG_READ / _WRITE). */
static inline int vfio_map_dma(const struct iommu_client *c, uint64_t vaddr, uint64_t iova,
                               uint64_t size, uint32_t flags)
{
    struct vfio_iommu_type1_dma_map req = {
        .argsz = sizeof(req), .flags = flags, .vaddr = vaddr, .iova = iova, .size = size
    };
    return iommu_call(c, IOMMU_OP_VFIO_IOMMU_MAP_DMA, &req, sizeof(req), 0, NULL);
}

/* Unmaps [iova, iova + *size) (or everything with VFIO_DMA_UNMAP_FLAG_ALL);
 * `*size` becomes the bytes unmapped. */
static inline int vfio_unmap_dma(const struct iommu_client *c, uint64_t iova, uint64_t *size,
                                 uint32_t flags)
{
    struct vfio_iommu_type1_dma_unmap req = {
        .argsz = sizeof(req), .flags = flags, .iova = iova, .size = *size
    };
    int err = iommu_call(c, IOMMU_OP_VFIO_IOMMU_UNMAP_DMA, &req, sizeof(req), 0, NULL);
    if (!err) {
        *size = req.size;
    }
    return err;
}

#endif /* IOMMU_CLIENT_H */
