//! Exporting to tier-2 backends: gRPC over HTTP/2 on the data path runtime. (Issue 10: in progress.)
