/**
 * RDMA transport. Empty until its issue lands: the module builds so the layout of the
 * project is fixed from the start.
 */
package io.pagewire.transport.rdma;
