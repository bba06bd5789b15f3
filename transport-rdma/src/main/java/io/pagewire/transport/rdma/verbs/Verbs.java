package io.pagewire.transport.rdma.verbs;

/**
 * Constants of the verbs port, numerically equal to libibverbs' ({@code enum ibv_access_flags},
 * {@code enum ibv_wr_opcode}, {@code enum ibv_wc_opcode}, {@code enum ibv_wc_status}) so an
 * implementation over real verbs passes them through unchanged.
 */
public final class Verbs {
    private Verbs() {
    }

    /** Largest length of one registration: DiSNi's {@code regMr} takes an {@code int}. */
    public static final long MAX_REGISTRATION_BYTES = Integer.MAX_VALUE;

    /** Most private data of a connect request on a reliable-connected queue pair ({@code rdma_connect} over InfiniBand: 56 bytes). */
    public static final int MAX_CONNECT_PRIVATE_DATA = 56;

    // ---- access flags (ibv_access_flags)
    /** The HCA may write the region locally (receive buffers, RDMA READ targets). */
    public static final int ACCESS_LOCAL_WRITE = 1;
    /** A peer may RDMA WRITE into the region (requires {@link #ACCESS_LOCAL_WRITE}). */
    public static final int ACCESS_REMOTE_WRITE = 1 << 1;
    /** A peer may RDMA READ the region. */
    public static final int ACCESS_REMOTE_READ = 1 << 2;

    // ---- send opcodes (ibv_wr_opcode)
    /** RDMA WRITE: local gather list to remote address / rkey. */
    public static final int WR_RDMA_WRITE = 0;
    /** SEND: consumes one posted receive at the peer. */
    public static final int WR_SEND = 2;
    /** RDMA READ: remote address / rkey to local scatter list. */
    public static final int WR_RDMA_READ = 4;

    /** Send flag: generate a completion for this work request. */
    public static final int SEND_SIGNALED = 1 << 1;

    // ---- completion opcodes (ibv_wc_opcode)
    public static final int WC_SEND = 0;
    public static final int WC_RDMA_WRITE = 1;
    public static final int WC_RDMA_READ = 2;
    public static final int WC_RECV = 128;

    // ---- completion status (ibv_wc_status)
    public static final int WC_SUCCESS = 0;
    public static final int WC_LOC_LEN_ERR = 1;
    public static final int WC_LOC_QP_OP_ERR = 2;
    public static final int WC_LOC_PROT_ERR = 4;
    public static final int WC_WR_FLUSH_ERR = 5;
    public static final int WC_REM_INV_REQ_ERR = 9;
    public static final int WC_REM_ACCESS_ERR = 10;
    public static final int WC_REM_OP_ERR = 11;
    public static final int WC_RETRY_EXC_ERR = 12;
    public static final int WC_RNR_RETRY_EXC_ERR = 13;
    public static final int WC_FATAL_ERR = 19;
    public static final int WC_GENERAL_ERR = 21;

    /** @return the libibverbs name of a completion status, for messages */
    public static String statusName(int status) {
        return switch (status) {
            case WC_SUCCESS -> "IBV_WC_SUCCESS";
            case WC_LOC_LEN_ERR -> "IBV_WC_LOC_LEN_ERR (local length error)";
            case WC_LOC_QP_OP_ERR -> "IBV_WC_LOC_QP_OP_ERR (local queue pair operation error)";
            case 3 -> "IBV_WC_LOC_EEC_OP_ERR";
            case WC_LOC_PROT_ERR -> "IBV_WC_LOC_PROT_ERR (local protection error: buffer not covered by its lkey)";
            case WC_WR_FLUSH_ERR -> "IBV_WC_WR_FLUSH_ERR (flushed: the queue pair is in the error state)";
            case 6 -> "IBV_WC_MW_BIND_ERR";
            case 7 -> "IBV_WC_BAD_RESP_ERR";
            case 8 -> "IBV_WC_LOC_ACCESS_ERR";
            case WC_REM_INV_REQ_ERR -> "IBV_WC_REM_INV_REQ_ERR (remote invalid request, e.g. a message longer than the receive buffer)";
            case WC_REM_ACCESS_ERR -> "IBV_WC_REM_ACCESS_ERR (remote access error: rkey, bounds or access rights refused)";
            case WC_REM_OP_ERR -> "IBV_WC_REM_OP_ERR (remote operation error)";
            case WC_RETRY_EXC_ERR -> "IBV_WC_RETRY_EXC_ERR (transport retries exhausted: the peer does not answer)";
            case WC_RNR_RETRY_EXC_ERR -> "IBV_WC_RNR_RETRY_EXC_ERR (receiver not ready: no receive posted at the peer)";
            case 14 -> "IBV_WC_LOC_RDD_VIOL_ERR";
            case 15 -> "IBV_WC_REM_INV_RD_REQ_ERR";
            case 16 -> "IBV_WC_REM_ABORT_ERR";
            case 17 -> "IBV_WC_INV_EECN_ERR";
            case 18 -> "IBV_WC_INV_EEC_STATE_ERR";
            case WC_FATAL_ERR -> "IBV_WC_FATAL_ERR";
            case 20 -> "IBV_WC_RESP_TIMEOUT_ERR";
            case WC_GENERAL_ERR -> "IBV_WC_GENERAL_ERR";
            default -> "unknown completion status " + status;
        };
    }

    /** @return a name of a send opcode, for messages */
    public static String opcodeName(int opcode) {
        return switch (opcode) {
            case WR_RDMA_WRITE -> "RDMA_WRITE";
            case WR_SEND -> "SEND";
            case WR_RDMA_READ -> "RDMA_READ";
            default -> "opcode " + opcode;
        };
    }
}
