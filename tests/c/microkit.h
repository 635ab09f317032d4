/* A host stand-in for libmicrokit's microkit.h: records each protected
 * call (label, MR0, MR1, the request in the command page) on stdout and
 * answers it the way the server does, from the canned replies the test
 * program queues. */
#ifndef MICROKIT_H
#define MICROKIT_H

#include <stdint.h>
#include <stdio.h>

typedef unsigned int microkit_channel;
typedef uint64_t microkit_msginfo;

extern uint64_t stub_mrs[2];
extern volatile uint8_t *stub_page;
/* Called after each call is recorded: writes the output fields. */
extern void (*stub_reply)(volatile uint8_t *page, uint64_t *mr0);

static inline microkit_msginfo microkit_msginfo_new(uint64_t label, uint16_t count)
{
    return (label << 12) | (count & 0x7f);
}

static inline uint64_t microkit_msginfo_get_label(microkit_msginfo info)
{
    return info >> 12;
}

static inline void microkit_mr_set(uint8_t mr, uint64_t value)
{
    stub_mrs[mr] = value;
}

static inline uint64_t microkit_mr_get(uint8_t mr)
{
    return stub_mrs[mr];
}

static inline microkit_msginfo microkit_ppcall(microkit_channel ch, microkit_msginfo info)
{
    uint64_t label = microkit_msginfo_get_label(info);
    /* Scalar ops (RESET_CLIENT) carry no struct. */
    uint64_t size = label == 0x101 ? 0 : stub_mrs[0];
    printf("call %u %llu %llu %llu ", ch, (unsigned long long)label,
           (unsigned long long)stub_mrs[0], (unsigned long long)stub_mrs[1]);
    for (uint64_t i = 0; i < size; i++) {
        printf("%02x", stub_page[i]);
    }
    printf("-\n");
    stub_mrs[0] = 0;
    if (stub_reply) {
        stub_reply(stub_page, &stub_mrs[0]);
        stub_reply = 0;
    }
    return microkit_msginfo_new(0, 1);
}

#endif
