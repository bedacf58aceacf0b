// A Go program whose time is split between its own code and the runtime's
// work on the system stack (allocation and garbage collection switch to
// the g0 stack through runtime.systemstack), as a real Go service's is.
// Usage: gowork SECONDS. Prints pid=P, then works.
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"
)

var sink [][]byte

//go:noinline
func allocate(n int) {
	for i := 0; i < n; i++ {
		b := make([]byte, 1024+i%4096)
		b[0] = byte(i)
		sink[i%len(sink)] = b
	}
}

//go:noinline
func compute(n int) uint64 {
	x := uint64(n)
	for i := 0; i < 200000; i++ {
		x = x*6364136223846793005 + uint64(i)
	}
	return x
}

//go:noinline
func work(secs float64) uint64 {
	var acc uint64
	start := time.Now()
	for time.Since(start).Seconds() < secs {
		allocate(2000)
		acc += compute(int(acc))
	}
	return acc
}

func main() {
	secs := 10.0
	if len(os.Args) > 1 {
		if s, err := strconv.ParseFloat(os.Args[1], 64); err == nil {
			secs = s
		}
	}
	sink = make([][]byte, 512)
	fmt.Printf("pid=%d\n", os.Getpid())
	fmt.Println(work(secs))
}
