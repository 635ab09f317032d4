/* A host stand-in for libmicrokit's microkit.h: each protected call goes to
 * tests/c_header.rs, which serves it with the real server core. The call
 * is one line on stdout, `call CHANNEL LABEL MR0 MR1 PAGE` (PAGE: the
 * command page in hex), and the reply one line on stdin, `reply LABEL MR0
 * PAGE`. */
#ifndef MICROKIT_H
#define MICROKIT_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

typedef unsigned int microkit_channel;
typedef uint64_t microkit_msginfo;

#define STUB_PAGE 4096
extern uint64_t stub_mrs[2];
extern volatile uint8_t stub_page[STUB_PAGE];

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
    printf("call %u %llu %llu %llu ", ch, (unsigned long long)microkit_msginfo_get_label(info),
           (unsigned long long)stub_mrs[0], (unsigned long long)stub_mrs[1]);
    for (int i = 0; i < STUB_PAGE; i++) {
        printf("%02x", stub_page[i]);
    }
    printf("\n");
    fflush(stdout);
    unsigned long long label, mr0;
    if (scanf(" reply %llu %llu ", &label, &mr0) != 2) {
        exit(2);
    }
    for (int i = 0; i < STUB_PAGE; i++) {
        unsigned byte;
        if (scanf("%2x", &byte) != 1) {
            exit(2);
        }
        stub_page[i] = (uint8_t)byte;
    }
    stub_mrs[0] = mr0;
    return microkit_msginfo_new(label, 1);
}

#endif
