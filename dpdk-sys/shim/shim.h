/*
 * Out-of-line copies of DPDK's static-inline hot functions, so Rust can call them.
 * Each is a one-line forward; no logic lives here.
 */
#ifndef SLUICE_SHIM_H
#define SLUICE_SHIM_H
#include <stdint.h>
#include <rte_mbuf.h>
#include <rte_ring.h>
#include <rte_lpm.h>

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n);
struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp);
int sluice_pktmbuf_alloc_bulk_lean(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n);
void sluice_pktmbuf_free(struct rte_mbuf *m);
char *sluice_pktmbuf_append(struct rte_mbuf *m, uint16_t len);
unsigned sluice_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n);
unsigned sluice_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n);
uint64_t sluice_rdtsc(void);
unsigned sluice_lcore_id(void);
unsigned sluice_socket_id(void);
int sluice_errno(void);
int sluice_lpm_lookup(const struct rte_lpm *lpm, uint32_t ip, uint32_t *next_hop);
void sluice_lpm_lookup_bulk(const struct rte_lpm *lpm, const uint32_t *ips, uint32_t *next_hops, unsigned n);
#endif
