/*
 * A stand-in for libmicrokit's microkit.h (Microkit 2.3.0), for building a
 * C PD without the SDK: the same types and the same signatures for what it
 * declares (the seL4 types as libsel4 has them on aarch64). In the SDK the
 * ppcall, notify and IRQ-ack functions are system calls; here they call
 * the microkit_standin_* hooks, which microkit_host.c implements on a
 * Linux host for c-host (the PD's protected calls served by the server
 * core; microkit_loop.c runs the PD's entry points). The types are in
 * microkit_types.h. Freestanding: compiling against it needs only stdint.h, so a PD
 * compiles for aarch64 against it too (tests/c_header.rs does). C99 or
 * C11 and later.
 */
#ifndef MICROKIT_H
#define MICROKIT_H

#include "microkit_types.h"

/* User provided functions */
void init(void);
void notified(microkit_channel ch);
microkit_msginfo protected(microkit_channel ch, microkit_msginfo msginfo);
seL4_Bool fault(microkit_child child, microkit_msginfo msginfo, microkit_msginfo *reply_msginfo);

extern char microkit_name[MICROKIT_PD_NAME_LENGTH];

void microkit_dbg_putc(int c);
void microkit_dbg_puts(const char *s);
void microkit_dbg_put8(seL4_Uint8 x);
void microkit_dbg_put32(seL4_Uint32 x);

extern seL4_Word microkit_standin_mrs[MICROKIT_STANDIN_MRS];
/* What the kernel does for the SDK's functions of the same names. */
microkit_msginfo microkit_standin_ppcall(microkit_channel ch, microkit_msginfo msginfo);
void microkit_standin_notify(microkit_channel ch);
void microkit_standin_irq_ack(microkit_channel ch);

static inline void microkit_notify(microkit_channel ch)
{
    microkit_standin_notify(ch);
}

static inline void microkit_irq_ack(microkit_channel ch)
{
    microkit_standin_irq_ack(ch);
}

static inline microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo msginfo)
{
    return microkit_standin_ppcall(ch, msginfo);
}

static inline void microkit_mr_set(seL4_Uint8 mr, seL4_Word value)
{
    if (mr < MICROKIT_STANDIN_MRS) {
        microkit_standin_mrs[mr] = value;
    }
}

static inline seL4_Word microkit_mr_get(seL4_Uint8 mr)
{
    return mr < MICROKIT_STANDIN_MRS ? microkit_standin_mrs[mr] : 0;
}

#endif
