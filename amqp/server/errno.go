package server

import "syscall"

// syscallEMFILE is retried by the accept loop: out of file descriptors is
// temporary under a connection flood.
const syscallEMFILE = syscall.EMFILE
