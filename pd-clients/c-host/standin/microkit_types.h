/*
 * The types and constants of the stand-in microkit.h (Microkit 2.3.0, the
 * seL4 types as libsel4 has them on aarch64) and the message-info
 * encoding: what a PD and the stand-in's host runtime (microkit_host.c)
 * both speak. A PD includes microkit.h, which includes this.
 */
#ifndef MICROKIT_TYPES_H
#define MICROKIT_TYPES_H

#include <stdint.h>

typedef signed char seL4_Int8;
typedef unsigned char seL4_Uint8;
typedef unsigned short seL4_Uint16;
typedef unsigned int seL4_Uint32;
typedef unsigned long seL4_Uint64;
typedef seL4_Uint64 seL4_Word;
typedef seL4_Int8 seL4_Bool;
#define seL4_True 1
#define seL4_False 0
typedef struct seL4_MessageInfo {
    seL4_Uint64 words[1];
} seL4_MessageInfo_t;

typedef unsigned int microkit_channel;
typedef unsigned int microkit_child;
typedef seL4_MessageInfo_t microkit_msginfo;

#define MICROKIT_MAX_CHANNELS 62
#define MICROKIT_MAX_CHANNEL_ID (MICROKIT_MAX_CHANNELS - 1)
#define MICROKIT_PD_NAME_LENGTH 64

/* The message registers (seL4_MsgMaxLength on aarch64). */
#define MICROKIT_STANDIN_MRS 120

/* seL4_MessageInfo_new(label, 0, 0, count): the label in bits 63..12, the
 * length in bits 6..0. */
static inline microkit_msginfo microkit_msginfo_new(seL4_Word label, seL4_Uint16 count)
{
    microkit_msginfo info = { { (label << 12) | ((seL4_Word)count & 0x7f) } };
    return info;
}

static inline seL4_Word microkit_msginfo_get_label(microkit_msginfo msginfo)
{
    return msginfo.words[0] >> 12;
}

static inline seL4_Word microkit_msginfo_get_count(microkit_msginfo msginfo)
{
    return msginfo.words[0] & 0x7f;
}

#endif
