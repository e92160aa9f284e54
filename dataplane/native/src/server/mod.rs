//! The OTLP receivers (gRPC and HTTP) on the data path runtime. (Issue 10: in progress.)
