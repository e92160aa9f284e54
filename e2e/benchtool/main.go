// Command benchtool is the sender and the sinks of `make bench` (e2e/bench.py): the same load and the
// same backends for every side measured, cheap enough never to be the bottleneck.
//
//	benchtool sink --backends N --port-file F
//	    N OTLP/gRPC trace backends on 127.0.0.1 in one process, plus an HTTP stats port. They take the
//	    request as raw bytes (gzip is decompressed by gRPC) and walk only the protobuf framing down to
//	    each span's trace_id: they count spans per backend and, per request sequence number (the last 8
//	    bytes of every trace ID, stamped by the sender), the spans received and the latest arrival time.
//	    The port file gets {"endpoints": [...], "stats": "127.0.0.1:P"} as JSON. GET /stats: totals;
//	    GET /seqs: one line "seq spans last_arrival_unix_ns" per sequence number seen.
//
//	benchtool send --target HOST:PORT --requests FILE --count N [--seq-start S] [--concurrency C]
//	              [--rate R] [--timing FILE]
//	    Replays pre-serialized ExportTraceServiceRequests (FILE: 4-byte little-endian length + bytes,
//	    repeated) over one raw gRPC connection: no protobuf encoding per request, only a copy of the
//	    template with the request's sequence number written into the last 8 bytes of every trace ID
//	    (so every request's traces are distinct and the sinks can tell requests apart). Closed loop with
//	    C requests in flight, or, with --rate, open loop: request i is due at start + i/R and is sent
//	    then whatever is in flight (latency is measured from the due time, so a late sender cannot hide
//	    queueing). --mirror sends, in open loop, a copy of each request at the same moment to a second
//	    target (sequence number + --mirror-offset): the direct path that added latency is paired with. UNAVAILABLE and RESOURCE_EXHAUSTED are retried after 10 ms (counted), as an SDK would.
//	    --timing writes "seq due_unix_ns done_unix_ns" per request. Prints a JSON summary, with its own
//	    CPU time (getrusage), on stdout.
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	_ "google.golang.org/grpc/encoding/gzip" // the sinks accept gzip-compressed exports
	"google.golang.org/grpc/status"
)

const (
	traceService = "opentelemetry.proto.collector.trace.v1.TraceService"
	traceExport  = "/" + traceService + "/Export"
)

// rawCodec passes request and response bytes through untouched (named "proto" for the content type).
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	*(v.(*[]byte)) = data
	return nil
}
func (rawCodec) Name() string { return "proto" }

// ---------------------------------------------------------------- protobuf framing only -----

var errWire = errors.New("malformed protobuf")

func varint(b []byte, i int) (uint64, int, error) {
	var v uint64
	for shift := uint(0); shift < 64; shift += 7 {
		if i >= len(b) {
			return 0, 0, errWire
		}
		c := b[i]
		i++
		v |= uint64(c&0x7f) << shift
		if c < 0x80 {
			return v, i, nil
		}
	}
	return 0, 0, errWire
}

// fields calls fn(field, start, end) for every length-delimited field of b[start:end]; other wire types
// are skipped.
func fields(b []byte, start, end int, fn func(field uint64, s, e int) error) error {
	i := start
	for i < end {
		key, n, err := varint(b, i)
		if err != nil {
			return err
		}
		i = n
		switch key & 7 {
		case 0:
			if _, i, err = varint(b, i); err != nil {
				return err
			}
		case 1:
			i += 8
		case 5:
			i += 4
		case 2:
			l, n, err := varint(b, i)
			if err != nil || uint64(end-n) < l {
				return errWire
			}
			i = n + int(l)
			if err := fn(key>>3, n, i); err != nil {
				return err
			}
		default:
			return errWire
		}
		if i > end {
			return errWire
		}
	}
	return nil
}

// traceIDs calls fn(offset) with the offset of every span's 16-byte trace_id in an
// ExportTraceServiceRequest (resource_spans=1 > scope_spans=2 > spans=2 > trace_id=1).
func traceIDs(b []byte, fn func(off int)) error {
	return fields(b, 0, len(b), func(f uint64, s, e int) error {
		if f != 1 {
			return nil
		}
		return fields(b, s, e, func(f uint64, s, e int) error {
			if f != 2 {
				return nil
			}
			return fields(b, s, e, func(f uint64, s, e int) error {
				if f != 2 {
					return nil
				}
				found := false
				err := fields(b, s, e, func(f uint64, s, e int) error {
					if f == 1 && e-s == 16 && !found {
						found = true
						fn(s)
					}
					return nil
				})
				if err == nil && !found {
					return errWire
				}
				return err
			})
		})
	})
}

// ---------------------------------------------------------------------------- sinks -----

type seqStat struct {
	spans int64
	last  int64
}

type sinks struct {
	mu       sync.Mutex
	seqs     map[uint64]*seqStat
	requests []atomic.Int64
	spans    []atomic.Int64
	bad      atomic.Int64
}

func (s *sinks) handle(backend int, data []byte) error {
	now := time.Now().UnixNano()
	type run struct {
		seq   uint64
		spans int64
	}
	var runs []run
	err := traceIDs(data, func(off int) {
		seq := binary.BigEndian.Uint64(data[off+8 : off+16])
		if n := len(runs); n > 0 && runs[n-1].seq == seq {
			runs[n-1].spans++
		} else {
			runs = append(runs, run{seq, 1})
		}
	})
	if err != nil {
		s.bad.Add(1)
		return status.Error(codes.InvalidArgument, err.Error())
	}
	var total int64
	s.mu.Lock()
	for _, r := range runs {
		st := s.seqs[r.seq]
		if st == nil {
			st = &seqStat{}
			s.seqs[r.seq] = st
		}
		st.spans += r.spans
		if now > st.last {
			st.last = now
		}
		total += r.spans
	}
	s.mu.Unlock()
	s.requests[backend].Add(1)
	s.spans[backend].Add(total)
	return nil
}

func (s *sinks) serviceDesc(backend int) *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: traceService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{{
			MethodName: "Export",
			Handler: func(_ any, _ context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
				var req []byte
				if err := dec(&req); err != nil {
					return nil, err
				}
				if err := s.handle(backend, req); err != nil {
					return nil, err
				}
				resp := []byte{}
				return &resp, nil
			},
		}},
	}
}

func runSinks(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	backends := fs.Int("backends", 1, "number of backends (listeners)")
	portFile := fs.String("port-file", "", "where to write the endpoints as JSON")
	_ = fs.Parse(args)
	s := &sinks{seqs: map[uint64]*seqStat{}, requests: make([]atomic.Int64, *backends), spans: make([]atomic.Int64, *backends)}
	var endpoints []string
	for i := 0; i < *backends; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := grpc.NewServer(grpc.ForceServerCodec(rawCodec{}), grpc.MaxRecvMsgSize(64<<20))
		srv.RegisterService(s.serviceDesc(i), struct{}{})
		go func() { _ = srv.Serve(lis) }()
		endpoints = append(endpoints, lis.Addr().String())
	}
	statsLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		out := map[string]any{"bad_requests": s.bad.Load()}
		var reqs, spans []int64
		for i := range s.requests {
			reqs = append(reqs, s.requests[i].Load())
			spans = append(spans, s.spans[i].Load())
		}
		out["requests"], out["spans"] = reqs, spans
		_ = json.NewEncoder(w).Encode(out)
	})
	mux.HandleFunc("/seqs", func(w http.ResponseWriter, _ *http.Request) {
		s.mu.Lock()
		keys := make([]uint64, 0, len(s.seqs))
		for k := range s.seqs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		bw := bufio.NewWriter(w)
		for _, k := range keys {
			fmt.Fprintf(bw, "%d %d %d\n", k, s.seqs[k].spans, s.seqs[k].last)
		}
		s.mu.Unlock()
		_ = bw.Flush()
	})
	go func() { _ = http.Serve(statsLis, mux) }()
	info, _ := json.Marshal(map[string]any{"endpoints": endpoints, "stats": statsLis.Addr().String()})
	if *portFile != "" {
		tmp := *portFile + ".tmp"
		if err := os.WriteFile(tmp, info, 0o644); err != nil {
			return err
		}
		if err := os.Rename(tmp, *portFile); err != nil {
			return err
		}
	} else {
		fmt.Println(string(info))
	}
	select {} // until killed
}

// --------------------------------------------------------------------------- sender -----

type template struct {
	data    []byte
	offsets []int
}

func loadTemplates(path string) ([]template, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []template
	for i := 0; i+4 <= len(raw); {
		n := int(binary.LittleEndian.Uint32(raw[i:]))
		if i+4+n > len(raw) {
			return nil, io.ErrUnexpectedEOF
		}
		t := template{data: raw[i+4 : i+4+n]}
		if err := traceIDs(t.data, func(off int) { t.offsets = append(t.offsets, off) }); err != nil {
			return nil, err
		}
		out = append(out, t)
		i += 4 + n
	}
	if len(out) == 0 {
		return nil, errors.New("no requests in " + path)
	}
	return out, nil
}

func cpuSeconds() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	tv := func(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }
	return tv(ru.Utime) + tv(ru.Stime)
}

func runSend(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	target := fs.String("target", "", "host:port")
	reqFile := fs.String("requests", "", "pre-serialized requests")
	count := fs.Int("count", 100, "requests to send")
	seqStart := fs.Uint64("seq-start", 1, "sequence number of the first request")
	concurrency := fs.Int("concurrency", 8, "requests in flight (closed loop)")
	rate := fs.Float64("rate", 0, "requests per second (open loop); 0: closed loop")
	timing := fs.String("timing", "", "file for per-request timings")
	mirror := fs.String("mirror", "", "open loop: also send each request, at the same moment, to this host:port")
	mirrorOffset := fs.Uint64("mirror-offset", 1<<62, "added to the sequence numbers of the mirrored copies")
	_ = fs.Parse(args)
	templates, err := loadTemplates(*reqFile)
	if err != nil {
		return err
	}
	conn, err := grpc.NewClient(*target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		return err
	}
	defer conn.Close()
	mirrorConn := conn
	if *mirror != "" {
		mirrorConn, err = grpc.NewClient(*mirror, grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallSendMsgSize(64<<20)))
		if err != nil {
			return err
		}
		defer mirrorConn.Close()
	}

	var retries, failed, spans, mirrorFailed atomic.Int64
	due := make([]int64, *count)
	done := make([]int64, *count)
	var firstErr atomic.Value
	pool := sync.Pool{New: func() any { return new([]byte) }}
	sendMirror := func(i int) {
		t := templates[i%len(templates)]
		buf := append([]byte(nil), t.data...)
		seq := *seqStart + uint64(i) + *mirrorOffset
		for _, off := range t.offsets {
			binary.BigEndian.PutUint64(buf[off+8:off+16], seq)
		}
		var resp []byte
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		if err := mirrorConn.Invoke(ctx, traceExport, &buf, &resp); err != nil {
			mirrorFailed.Add(1)
		}
	}
	sendOne := func(i int) {
		t := templates[i%len(templates)]
		bp := pool.Get().(*[]byte)
		buf := append((*bp)[:0], t.data...)
		seq := *seqStart + uint64(i)
		for _, off := range t.offsets {
			binary.BigEndian.PutUint64(buf[off+8:off+16], seq)
		}
		var resp []byte
		for attempt := 0; ; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			err := conn.Invoke(ctx, traceExport, &buf, &resp)
			cancel()
			if err == nil {
				spans.Add(int64(len(t.offsets)))
				break
			}
			code := status.Code(err)
			if (code == codes.Unavailable || code == codes.ResourceExhausted) && attempt < 3000 {
				retries.Add(1)
				time.Sleep(10 * time.Millisecond)
				continue
			}
			failed.Add(1)
			firstErr.CompareAndSwap(nil, err.Error())
			break
		}
		done[i] = time.Now().UnixNano()
		*bp = buf
		pool.Put(bp)
	}

	cpu0 := cpuSeconds()
	start := time.Now()
	var wg sync.WaitGroup
	if *rate > 0 {
		interval := float64(time.Second) / *rate
		maxLate := time.Duration(0)
		for i := 0; i < *count; i++ {
			at := start.Add(time.Duration(float64(i) * interval))
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			} else if -d > maxLate {
				maxLate = -d
			}
			due[i] = at.UnixNano()
			wg.Add(1)
			go func(i int) { defer wg.Done(); sendOne(i) }(i)
			if *mirror != "" {
				wg.Add(1)
				go func(i int) { defer wg.Done(); sendMirror(i) }(i)
			}
		}
		wg.Wait()
		defer func() { fmt.Fprintf(os.Stderr, "max dispatch lateness %v\n", maxLate) }()
	} else {
		var next atomic.Int64
		for w := 0; w < *concurrency; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1) - 1)
					if i >= *count {
						return
					}
					due[i] = time.Now().UnixNano()
					sendOne(i)
				}
			}()
		}
		wg.Wait()
	}
	wall := time.Since(start).Seconds()
	cpu := cpuSeconds() - cpu0
	if *timing != "" {
		f, err := os.Create(*timing)
		if err != nil {
			return err
		}
		bw := bufio.NewWriter(f)
		for i := 0; i < *count; i++ {
			fmt.Fprintf(bw, "%d %d %d\n", *seqStart+uint64(i), due[i], done[i])
		}
		if err := bw.Flush(); err != nil {
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	summary := map[string]any{
		"requests":      *count,
		"spans":         spans.Load(),
		"retries":       retries.Load(),
		"failed":        failed.Load(),
		"mirror_failed": mirrorFailed.Load(),
		"wall_s":        wall,
		"cpu_s":         cpu,
		"start_unix_ns": start.UnixNano(),
		"total_cpu_s":   cpuSeconds(),
	}
	if e := firstErr.Load(); e != nil {
		summary["first_error"] = e
	}
	return json.NewEncoder(os.Stdout).Encode(summary)
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: benchtool sink|send [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "sink":
		err = runSinks(os.Args[2:])
	case "send":
		err = runSend(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtool:", err)
		os.Exit(1)
	}
}
