/* A fake libibverbs provider for host tests and benchmarks (no RDMA device needed).
 * It builds a real struct ibv_context, ibv_qp and ibv_cq from the installed headers and fills the
 * ops table entries that verbs.h's static-inline ibv_post_send/ibv_post_recv/ibv_poll_cq call
 * through. The TypeScript side reads those pointers at the offsets in ffi/ibverbs/layout.ts, so a
 * wrong offset calls the wrong function (or crashes) instead of passing silently.
 * Compiled at test/bench time by test/ffi/fake-provider.ts with gcc. */
#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <infiniband/verbs.h>

static struct ibv_context ctx;
static struct ibv_qp qp;
static struct ibv_cq cq;

static uint64_t send_wr_count, send_wr_id_sum, send_bytes_sum, recv_wr_count, recv_wr_id_sum;
static uint32_t last_remote_qpn, last_remote_qkey, last_opcode, last_send_flags;

/* Walks the chain like a provider does; a wr_id of UINT64_MAX is refused with ENOMEM (queue full). */
static int fake_post_send(struct ibv_qp *q, struct ibv_send_wr *wr, struct ibv_send_wr **bad) {
	if (q != &qp) return EINVAL;
	for (; wr; wr = wr->next) {
		if (wr->wr_id == UINT64_MAX) { *bad = wr; return ENOMEM; }
		send_wr_count++;
		send_wr_id_sum += wr->wr_id;
		for (int i = 0; i < wr->num_sge; i++) send_bytes_sum += wr->sg_list[i].length;
		last_remote_qpn = wr->wr.ud.remote_qpn;
		last_remote_qkey = wr->wr.ud.remote_qkey;
		last_opcode = wr->opcode;
		last_send_flags = wr->send_flags;
	}
	return 0;
}

static int fake_post_recv(struct ibv_qp *q, struct ibv_recv_wr *wr, struct ibv_recv_wr **bad) {
	if (q != &qp) return EINVAL;
	for (; wr; wr = wr->next) {
		recv_wr_count++;
		recv_wr_id_sum += wr->wr_id;
	}
	(void)bad;
	return 0;
}

/* Returns n completions: wr_id = i, byte_len = 100 + i, src_qp = 4242, status success. */
static int fake_poll_cq(struct ibv_cq *c, int n, struct ibv_wc *wc) {
	if (c != &cq) return -EINVAL;
	for (int i = 0; i < n; i++) {
		memset(&wc[i], 0, sizeof wc[i]);
		wc[i].wr_id = (uint64_t)i;
		wc[i].status = IBV_WC_SUCCESS;
		wc[i].opcode = IBV_WC_RECV;
		wc[i].byte_len = 100u + (uint32_t)i;
		wc[i].src_qp = 4242;
		wc[i].wc_flags = IBV_WC_GRH;
	}
	return n;
}

struct ibv_context *fake_context(void) {
	ctx.ops.post_send = fake_post_send;
	ctx.ops.post_recv = fake_post_recv;
	ctx.ops.poll_cq = fake_poll_cq;
	return &ctx;
}
struct ibv_qp *fake_qp(void) { qp.context = fake_context(); qp.qp_num = 77; return &qp; }
struct ibv_cq *fake_cq(void) { cq.context = fake_context(); return &cq; }

/* A plain exported function, to compare the cost of a dlopen'ed call with an ops-table call. */
int fake_noop(int x) { return x; }

void fake_reset(void) {
	send_wr_count = send_wr_id_sum = send_bytes_sum = recv_wr_count = recv_wr_id_sum = 0;
	last_remote_qpn = last_remote_qkey = last_opcode = last_send_flags = 0;
}
uint64_t fake_send_wr_count(void) { return send_wr_count; }
uint64_t fake_send_wr_id_sum(void) { return send_wr_id_sum; }
uint64_t fake_send_bytes_sum(void) { return send_bytes_sum; }
uint64_t fake_recv_wr_count(void) { return recv_wr_count; }
uint64_t fake_recv_wr_id_sum(void) { return recv_wr_id_sum; }
uint32_t fake_last_remote_qpn(void) { return last_remote_qpn; }
uint32_t fake_last_remote_qkey(void) { return last_remote_qkey; }
uint32_t fake_last_opcode(void) { return last_opcode; }
uint32_t fake_last_send_flags(void) { return last_send_flags; }
