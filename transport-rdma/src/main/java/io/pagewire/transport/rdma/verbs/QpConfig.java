package io.pagewire.transport.rdma.verbs;

/**
 * Queue-pair settings.
 *
 * @param name label for messages and failure injection (e.g. {@code urgent}, {@code background})
 * @param sendDepth most outstanding send work requests ({@code max_send_wr})
 * @param recvDepth most posted receives ({@code max_recv_wr})
 * @param rnrRetry receiver-not-ready retries, 0..7 (7 = for ever); pagewire uses 0: its credits
 *        guarantee a posted receive for every SEND, so an RNR is a protocol violation
 */
public record QpConfig(String name, int sendDepth, int recvDepth, int rnrRetry) {
    public QpConfig {
        if (sendDepth < 1 || recvDepth < 1 || rnrRetry < 0 || rnrRetry > 7) {
            throw new IllegalArgumentException("queue pair " + name + ": depths " + sendDepth + "/" + recvDepth + " must be positive and rnrRetry "
                    + rnrRetry + " in 0..7");
        }
    }
}
