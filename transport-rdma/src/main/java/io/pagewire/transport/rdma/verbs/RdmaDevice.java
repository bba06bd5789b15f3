package io.pagewire.transport.rdma.verbs;

/** An RDMA device context ({@code ibv_context}). */
public interface RdmaDevice {

    /** @return the device name, e.g. {@code mlx5_0} or {@code rxe0} */
    String name();

    /** @return a new protection domain ({@code ibv_alloc_pd}) */
    ProtectionDomain allocPd() throws VerbsException;

    /**
     * @param entries capacity; a queue overflowing it is a fatal error, as on hardware
     * @return a new completion queue with its completion channel
     */
    CompletionQueue createCq(int entries) throws VerbsException;
}
