using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MoRSharp.Kernels;

/// <summary>
/// Runs the parts of a decode kernel (<see cref="SmallGemm"/>, <see cref="DecodeAttention"/>) on libtorch's own OpenMP thread team, by calling the
/// GNU OpenMP entry point <c>GOMP_parallel</c> of the libgomp that libtorch loaded.
/// <para>Why not our own threads: libtorch's OpenMP workers keep spinning for a while after each parallel operation, so
/// a second set of threads competes with them for the two cores. Measured on the micro shape (scratch program): a resident .NET worker made a
/// decode step 4–5× slower than libtorch alone (65–75 ms instead of 12–15), and only
/// <c>OMP_WAIT_POLICY=PASSIVE</c> brought it back. Sharing the team (the same thread that calls libtorch calls
/// <c>GOMP_parallel</c>, and libgomp keeps one pool per calling thread) has no such contention.</para>
/// <para><see cref="Hold"/> keeps the team open across a whole decoding step, for processes where libgomp's
/// workers would otherwise fall asleep between calls.</para>
/// <para>Parts are claimed from a counter, so which thread runs which part does not matter; every output belongs to
/// exactly one part and the split depends only on the shape, so results do not depend on the thread count. Without
/// libgomp (other platforms, other OpenMP runtimes) the parts run one after another on the calling thread.</para>
/// </summary>
public static unsafe class KernelThreads
{
    private static readonly delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> GompParallel = FindGompParallel();

    /// <summary>True when parts run on libtorch's OpenMP team (libgomp found); otherwise they run on the caller.</summary>
    public static bool UsesOpenMpTeam => GompParallel != null;

    /// <summary>Runs <paramref name="fn"/>(job, p, parts) for p in [0, parts), on up to <paramref name="threads"/> threads; returns when all
    /// are done. <paramref name="job"/> points to the kernel's operands (a struct on the caller's stack), read-only to the parts.</summary>
    internal static void Run(delegate*<void*, int, int, void> fn, void* job, int parts, int threads)
    {
        if (_held is { } team && parts > 1)
        {
            team.Run(fn, job, parts);
            return;
        }
        if (threads <= 1 || parts <= 1 || GompParallel == null)
        {
            for (int p = 0; p < parts; p++) fn(job, p, parts);
            return;
        }
        var state = new TeamState { Fn = fn, Job = job, Parts = parts, Next = 0 };
        GompParallel(&TeamEntry, &state, (uint)Math.Min(threads, parts), 0);
    }

    /// <summary>
    /// Runs <paramref name="body"/> on the calling thread with the OpenMP team held open: the team's other threads wait for
    /// kernel parts in a spin loop (yielding the core now and then) until the body returns. For decoding steps, where a
    /// kernel call comes every few tens of microseconds: once a process has more libgomp threads than cores (two threads
    /// that each ran a parallel libtorch operation are enough), libgomp's workers sleep almost at once after a parallel
    /// region, and waking them for every projection cost about 20% of a micro decode step (measured with a bare decode loop,
    /// alternating runs with and without a second thread that had run one parallel operation). Inside the body libtorch's
    /// own operations run single-threaded (they are in a parallel region), so the body should be decode work whose large
    /// products go through <see cref="SmallGemm"/>, not a long prompt's prefill. Exceptions from the body are rethrown here.
    /// Nested calls, one thread, or no libgomp: the body simply runs.
    /// </summary>
    public static void Hold(Action body)
    {
        int threads = TorchSharp.torch.get_num_threads();
        if (_held is not null || GompParallel == null || threads <= 1 || !SmallGemm.IsEnabled)
        {
            body();
            return;
        }
        var team = new HeldTeam(body, Environment.CurrentManagedThreadId);
        var handle = GCHandle.Alloc(team);
        try
        {
            GompParallel(&HoldEntry, (void*)GCHandle.ToIntPtr(handle), (uint)threads, 0);
        }
        finally
        {
            handle.Free();
        }
        team.Error?.Throw();
    }

    [ThreadStatic] private static HeldTeam? _held;

    /// <summary>True on the thread running a <see cref="Hold"/> body with the team held (libtorch's own operations there run single-threaded).</summary>
    internal static bool IsHeld => _held is not null;

    // Every team thread enters here once per Hold: the caller's thread runs the body, the others serve kernel parts.
    [UnmanagedCallersOnly]
    private static void HoldEntry(void* data)
    {
        var team = (HeldTeam)GCHandle.FromIntPtr((IntPtr)data).Target!;
        if (Environment.CurrentManagedThreadId != team.Owner)
        {
            team.Serve();
            return;
        }
        _held = team;
        try
        {
            team.Body();
        }
        catch (Exception e)
        {
            team.Error = System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e);
        }
        finally
        {
            _held = null;
            team.Finish();
        }
    }

    /// <summary>A team held open by <see cref="Hold"/>: the owner posts jobs, the other threads claim their parts.</summary>
    private sealed class HeldTeam(Action body, int owner)
    {
        public readonly Action Body = body;
        public readonly int Owner = owner;
        public System.Runtime.ExceptionServices.ExceptionDispatchInfo? Error;
        private volatile Job? current;
        private volatile bool finished;

        // One kernel call. A new object per call, so a thread that wakes late can only find its parts already claimed.
        private sealed class Job(delegate*<void*, int, int, void> fn, void* operands, int parts)
        {
            public readonly delegate*<void*, int, int, void> Fn = fn;
            public readonly void* Operands = operands;
            public readonly int Parts = parts;
            public int Next, Done;

            public void Work()
            {
                int p;
                while ((p = Interlocked.Increment(ref Next) - 1) < Parts)
                {
                    Fn(Operands, p, Parts);
                    Interlocked.Increment(ref Done);
                }
            }
        }

        public void Run(delegate*<void*, int, int, void> fn, void* operands, int parts)
        {
            var job = new Job(fn, operands, parts);
            current = job;
            job.Work();
            var spin = new SpinWait();
            while (Volatile.Read(ref job.Done) < parts) spin.SpinOnce(sleep1Threshold: -1);
        }

        public void Finish() => finished = true;

        public void Serve()
        {
            Job? seen = null;
            var spin = new SpinWait();
            while (!finished)
            {
                var job = current;
                if (job is not null && !ReferenceEquals(job, seen))
                {
                    seen = job;
                    job.Work();
                    spin.Reset();
                }
                else spin.SpinOnce(sleep1Threshold: -1);
            }
        }
    }

    private struct TeamState
    {
        public delegate*<void*, int, int, void> Fn;
        public void* Job;
        public int Parts;
        public int Next;
    }

    // Runs on every thread of the team (the caller included): claim parts until none are left. Must not throw.
    [UnmanagedCallersOnly]
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    private static void TeamEntry(void* data)
    {
        var s = (TeamState*)data;
        int p;
        while ((p = Interlocked.Increment(ref s->Next) - 1) < s->Parts) s->Fn(s->Job, p, s->Parts);
    }

    // libgomp is loaded by libtorch under a hashed name (libgomp-98b21ff3.so.1 in TorchSharp-cpu 0.107.0); find the
    // mapped file rather than guess the name, and take its GOMP_parallel (the GCC 4.9+ ABI: fn, data, threads, flags).
    private static delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> FindGompParallel()
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            foreach (var line in File.ReadLines("/proc/self/maps"))
            {
                int slash = line.IndexOf('/');
                if (slash < 0) continue;
                var path = line[slash..];
                var name = Path.GetFileName(path);
                if (!name.StartsWith("libgomp", StringComparison.Ordinal) || !name.Contains(".so", StringComparison.Ordinal)) continue;
                if (NativeLibrary.TryLoad(path, out var handle) && NativeLibrary.TryGetExport(handle, "GOMP_parallel", out var fn))
                    return (delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void>)fn;
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }
}

/// <summary>What a kernel does with its products besides storing them.</summary>
internal enum Epilogue
{
    None,
    /// <summary>y += residual (same shape as y).</summary>
    AddResidual,
    /// <summary>Two weights (gate, up) of equal shape: y₀ = silu(y₀) ⊙ y₁.</summary>
    SwiGlu,
}

/// <summary>
/// Operands of one kernel call: input rows X [M, D] and up to <see cref="MaxSegments"/> weights Wₛ [Nₛ, D] (float32 or
/// bfloat16) with outputs
/// Yₛ [M, Nₛ]. Raw pointers into memory the caller keeps alive until <see cref="KernelThreads.Run"/> returns.
/// </summary>
internal unsafe struct KernelJob
{
    public const int MaxSegments = 3;

    public readonly float* X;
    public readonly int M, D;
    public readonly Epilogue Kind;
    public readonly float* R;   // residual for AddResidual, [M, N₀]
    public bool Bf16;           // weights are bfloat16 (all of them), else float32
    public byte* W0, W1, W2;
    public float* Y0, Y1, Y2;
    public int N0, N1, N2;
    public int Segments;

    public KernelJob(float* x, int m, int d, Epilogue kind, float* residual)
    {
        X = x; M = m; D = d; Kind = kind; R = residual;
    }

    public readonly int TotalRows => N0 + N1 + N2;

    public void Set(int segment, byte* w, float* y, int n)
    {
        switch (segment)
        {
            case 0: W0 = w; Y0 = y; N0 = n; break;
            case 1: W1 = w; Y1 = y; N1 = n; break;
            case 2: W2 = w; Y2 = y; N2 = n; break;
            default: throw new ArgumentOutOfRangeException(nameof(segment));
        }
        Segments = Math.Max(Segments, segment + 1);
    }

    public readonly (IntPtr w, IntPtr y, int n) SegmentAt(int segment) => segment switch
    {
        0 => ((IntPtr)W0, (IntPtr)Y0, N0),
        1 => ((IntPtr)W1, (IntPtr)Y1, N1),
        _ => ((IntPtr)W2, (IntPtr)Y2, N2),
    };
}
