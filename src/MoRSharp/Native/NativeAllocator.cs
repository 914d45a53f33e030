using System.Runtime.InteropServices;

namespace MoRSharp.Native;

/// <summary>
/// Tells glibc's malloc (which libtorch's CPU allocator uses) to keep freed memory for reuse instead of handing it back
/// to the kernel. By default every allocation above 128 KiB – 32 MiB is a fresh <c>mmap</c> that is unmapped on free, so
/// a training step that allocates its 400 MB logits, their gradient and every activation again pays a page fault and a
/// kernel page clear per 4 KiB each time: a <c>perf</c> profile of a micro training step spent about a fifth of its time
/// there (<c>clear_page_erms</c>, page-fault handlers), and turning it off made the step 1.1–1.4× faster
/// (docs/benchmarks.md). The cost: resident memory stays at the process's peak instead of shrinking after a burst (what
/// PyTorch users get from jemalloc/tcmalloc too). Applied once by <see cref="TorchRuntime.Initialize"/> on Linux/glibc;
/// set <c>MORSHARP_KEEP_FREED_MEMORY=0</c> to leave malloc's defaults alone.
/// </summary>
public static class NativeAllocator
{
    public const string Variable = "MORSHARP_KEEP_FREED_MEMORY";
    private const int M_TRIM_THRESHOLD = -1, M_MMAP_MAX = -4;

    /// <summary>Whether the setting is in effect in this process.</summary>
    public static bool KeepsFreedMemory { get; private set; }

    [DllImport("libc", EntryPoint = "mallopt")]
    private static extern int MallOpt(int param, int value);

    internal static void Configure()
    {
        if (!OperatingSystem.IsLinux() || KeepsFreedMemory) return;
        var value = Environment.GetEnvironmentVariable(Variable)?.Trim();
        if (value is "0" || string.Equals(value, "false", StringComparison.OrdinalIgnoreCase)) return;
        try
        {
            // no mmap-backed blocks (large blocks come from the heap and are reused), and never trim the heap's top
            KeepsFreedMemory = MallOpt(M_MMAP_MAX, 0) == 1 && MallOpt(M_TRIM_THRESHOLD, int.MaxValue) == 1;
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            KeepsFreedMemory = false;   // not glibc: keep the platform's allocator behaviour
        }
    }
}
