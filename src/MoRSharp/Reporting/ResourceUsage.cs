using System.Diagnostics;
using System.Globalization;

namespace MoRSharp.Reporting;

/// <summary>
/// Memory of this process for reports and benchmarks. On Linux from <c>/proc/self/status</c> (<c>VmHWM</c>, the peak
/// resident set, and <c>VmRSS</c>), which counts native memory (libtorch tensors) as well as the managed heap; elsewhere
/// from <see cref="Process"/>.
/// </summary>
public static class ResourceUsage
{
    private const string StatusPath = "/proc/self/status";

    /// <summary>The peak resident set size in bytes since the process started (<c>VmHWM</c>), or <see cref="Process.PeakWorkingSet64"/>.</summary>
    public static long PeakRssBytes()
    {
        var kb = ReadStatusKb("VmHWM:");
        if (kb is > 0) return kb.Value * 1024;
        using var p = Process.GetCurrentProcess();
        long peak = p.PeakWorkingSet64;
        return peak > 0 ? peak : Math.Max(p.WorkingSet64, Environment.WorkingSet);
    }

    /// <summary>The current resident set size in bytes (<c>VmRSS</c>), or <see cref="Environment.WorkingSet"/>.</summary>
    public static long CurrentRssBytes()
    {
        var kb = ReadStatusKb("VmRSS:");
        if (kb is > 0) return kb.Value * 1024;
        return Environment.WorkingSet;
    }

    /// <summary><c>rss 1.21 GiB (peak 1.53 GiB)</c>.</summary>
    public static string Describe() => $"rss {Fmt.Bytes(CurrentRssBytes())} (peak {Fmt.Bytes(PeakRssBytes())})";

    /// <summary>A <c>/proc/self/status</c> field in kB (e.g. <c>"VmHWM:   123456 kB"</c>), or null when unavailable.</summary>
    public static long? ReadStatusKb(string field)
    {
        if (!OperatingSystem.IsLinux()) return null;
        try
        {
            foreach (var line in File.ReadLines(StatusPath))
            {
                if (!line.StartsWith(field, StringComparison.Ordinal)) continue;
                return ParseKb(line.AsSpan(field.Length));
            }
        }
        catch (IOException) { }
        catch (UnauthorizedAccessException) { }
        return null;
    }

    /// <summary>Parses the part of a status line after its name (<c>"   123456 kB"</c>) to kB; null when it is not a kB count.</summary>
    public static long? ParseKb(ReadOnlySpan<char> rest)
    {
        rest = rest.Trim();
        int space = rest.IndexOf(' ');
        var number = space < 0 ? rest : rest[..space];
        var unit = space < 0 ? ReadOnlySpan<char>.Empty : rest[(space + 1)..].Trim();
        if (!long.TryParse(number, NumberStyles.None, CultureInfo.InvariantCulture, out var value)) return null;
        return unit.Equals("kB", StringComparison.OrdinalIgnoreCase) || unit.IsEmpty ? value : null;
    }
}
