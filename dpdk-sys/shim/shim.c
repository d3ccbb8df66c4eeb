#include <rte_config.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_cycles.h>
#include <rte_ethdev.h>
#include "shim.h"

uint16_t sluice_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t sluice_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

struct rte_mbuf *sluice_pktmbuf_alloc(struct rte_mempool *mp)
{
	return rte_pktmbuf_alloc(mp);
}

int sluice_pktmbuf_alloc_bulk_lean(struct rte_mempool *mp, struct rte_mbuf **mbufs, unsigned n)
{
	unsigned i;

	if (rte_mempool_get_bulk(mp, (void **)mbufs, n) != 0)
		return -ENOENT;
	/* What rte_pktmbuf_alloc_bulk does, less its writes to the second cache line: a
	 * pooled mbuf already has refcnt 1, next NULL and nb_segs 1 (the pool's invariant,
	 * documented with rte_mbuf_raw_alloc), and tx_offload and vlan_tci_outer are read
	 * only under ol_flags, whose offload bits are cleared. All or nothing, like rte_mempool_get_bulk. */
	for (i = 0; i < n; i++) {
		struct rte_mbuf *m = mbufs[i];

		m->data_off = RTE_MIN((uint16_t)RTE_PKTMBUF_HEADROOM, m->buf_len);
		m->pkt_len = 0;
		m->data_len = 0;
		m->port = RTE_MBUF_PORT_INVALID;
		m->ol_flags &= RTE_MBUF_F_EXTERNAL;
		m->packet_type = 0;
		m->vlan_tci = 0;
	}
	return 0;
}

void sluice_pktmbuf_free(struct rte_mbuf *m)
{
	rte_pktmbuf_free(m);
}

char *sluice_pktmbuf_append(struct rte_mbuf *m, uint16_t len)
{
	return rte_pktmbuf_append(m, len);
}

unsigned sluice_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned sluice_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

uint64_t sluice_rdtsc(void)
{
	return rte_rdtsc();
}

unsigned sluice_lcore_id(void)
{
	return rte_lcore_id();
}

unsigned sluice_socket_id(void)
{
	return rte_socket_id();
}

int sluice_errno(void)
{
	return rte_errno;
}

int sluice_lpm_lookup(const struct rte_lpm *lpm, uint32_t ip, uint32_t *next_hop)
{
	return rte_lpm_lookup(lpm, ip, next_hop);
}

void sluice_lpm_lookup_bulk(const struct rte_lpm *lpm, const uint32_t *ips, uint32_t *next_hops, unsigned n)
{
	rte_lpm_lookup_bulk(lpm, ips, next_hops, n);
}
