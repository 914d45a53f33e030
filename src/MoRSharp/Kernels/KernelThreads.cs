using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MoRSharp.Kernels;

/// <summary>
/// Runs the parts of a decode kernel (<see cref="SmallGemm"/>) on libtorch's own OpenMP thread team, by calling the
/// GNU OpenMP entry point <c>GOMP_parallel</c> of the libgomp that libtorch loaded.
/// <para>Why not our own threads: libtorch's OpenMP workers keep spinning for a while after each parallel operation, so
/// a second set of threads competes with them for the two cores. Measured on the micro shape: a resident .NET worker made a
/// decode step 4–5× slower than libtorch alone (65–75 ms instead of 12–15), and only
/// <c>OMP_WAIT_POLICY=PASSIVE</c> brought it back. Sharing the team (the same thread that calls libtorch calls
/// <c>GOMP_parallel</c>, and libgomp keeps one pool per calling thread) has no such contention.</para>
/// <para>Parts are claimed from a counter, so which thread runs which part does not matter; every output belongs to
/// exactly one part and the split depends only on the shape, so results do not depend on the thread count. Without
/// libgomp (other platforms, other OpenMP runtimes) the parts run one after another on the calling thread.</para>
/// </summary>
internal static unsafe class KernelThreads
{
    private static readonly delegate* unmanaged<delegate* unmanaged<void*, void>, void*, uint, uint, void> GompParallel = FindGompParallel();

    /// <summary>True when parts run on libtorch's OpenMP team (libgomp found); otherwise they run on the caller.</summary>
    public static bool UsesOpenMpTeam => GompParallel != null;

    /// <summary>Runs <paramref name="fn"/>(job, p, parts) for p in [0, parts), on up to <paramref name="threads"/> threads; returns when all are done.</summary>
    public static void Run(delegate*<in KernelJob, int, int, void> fn, in KernelJob job, int parts, int threads)
    {
        if (threads <= 1 || parts <= 1 || GompParallel == null)
        {
            for (int p = 0; p < parts; p++) fn(job, p, parts);
            return;
        }
        var state = new TeamState { Fn = fn, Job = job, Parts = parts, Next = 0 };
        GompParallel(&TeamEntry, &state, (uint)Math.Min(threads, parts), 0);
    }

    private struct TeamState
    {
        public delegate*<in KernelJob, int, int, void> Fn;
        public KernelJob Job;
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
/// Operands of one kernel call: input rows X [M, D] and up to <see cref="MaxSegments"/> weights Wₛ [Nₛ, D] with outputs
/// Yₛ [M, Nₛ]. Raw pointers into memory the caller keeps alive until <see cref="KernelThreads.Run"/> returns.
/// </summary>
internal unsafe struct KernelJob
{
    public const int MaxSegments = 3;

    public readonly float* X;
    public readonly int M, D;
    public readonly Epilogue Kind;
    public readonly float* R;   // residual for AddResidual, [M, N₀]
    public float* W0, W1, W2, Y0, Y1, Y2;
    public int N0, N1, N2;
    public int Segments;

    public KernelJob(float* x, int m, int d, Epilogue kind, float* residual)
    {
        X = x; M = m; D = d; Kind = kind; R = residual;
    }

    public readonly int TotalRows => N0 + N1 + N2;

    public void Set(int segment, float* w, float* y, int n)
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
