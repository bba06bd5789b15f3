/**
 * Checkpoint replication (COLO-style, seed 004; docs/replication.md): {@link io.pagewire.agent.replica.ReplicationPrimary}
 * keeps a {@link io.pagewire.agent.replica.ReplicaSecondary}'s guest RAM at the primary's last checkpoint.
 *
 * <p>Invariants: the secondary copies nothing into its guest's RAM before a checkpoint is complete (marker on the
 * urgent lane, its ROUND_END delivered on every background stream, the page count matching); until then the guest RAM
 * plus the backup of the pages its own guest dirtied hold the previous complete checkpoint, so a failover at any moment
 * restores exactly that one. The primary resumes its guest only after the secondary acknowledged the checkpoint.
 *
 * <p>Threading: each engine's {@code run} on one thread; transport callbacks on transport threads only record what
 * arrived; the secondary has one userfaultfd fault thread.
 */
package io.pagewire.agent.replica;
