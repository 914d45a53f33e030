using System.Reflection;
using System.Runtime.InteropServices;
using System.Security.Cryptography;
using System.Text.RegularExpressions;
using MoRSharp.Native;
using Xunit;
using Xunit.Abstractions;

namespace MoRSharp.Tests.Native;

/// <summary>Locates the unpatched libLibTorchSharp.so in the NuGet package folder (never modified by these tests).</summary>
internal static class RealTorchSharpNative
{
    public const string MissingVersion = "GLIBCXX_3.4.32";
    public const string MarkerSymbol = "_ZSt21ios_base_library_initv";

    public static string? Path { get; } = Locate();

    public static string SkipReason { get; } =
        "libLibTorchSharp.so not found in the NuGet package folder (looked for torchsharp/<version>/runtimes/linux-x64/native/ under "
        + "$NUGET_PACKAGES and ~/.nuget/packages); restore the solution first.";

    private static string? Locate()
    {
        var version = typeof(TorchSharp.torch).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion?.Split('+')[0] ?? "0.107.0";
        var roots = new List<string>();
        var env = Environment.GetEnvironmentVariable("NUGET_PACKAGES");
        if (!string.IsNullOrEmpty(env)) roots.Add(env);
        roots.Add(System.IO.Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages"));
        return roots
            .SelectMany(r => new[] { version, "0.107.0" }.Distinct().Select(v => System.IO.Path.Combine(r, "torchsharp", v, "runtimes", "linux-x64", "native", "libLibTorchSharp.so")))
            .FirstOrDefault(File.Exists);
    }
}

public sealed class RealTorchSharpNativeFactAttribute : FactAttribute
{
    public RealTorchSharpNativeFactAttribute()
    {
        if (RealTorchSharpNative.Path is null) Skip = RealTorchSharpNative.SkipReason;
    }
}

public sealed class LinuxFactAttribute : FactAttribute
{
    public LinuxFactAttribute()
    {
        if (!OperatingSystem.IsLinux()) Skip = "Needs a Linux system libstdc++.so.6.";
    }
}

public sealed class ElfVersionPatcherTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir;

    public ElfVersionPatcherTests(ITestOutputHelper output)
    {
        _output = output;
        _dir = Path.Combine(Path.GetTempPath(), "morsharp-elf-tests-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(_dir);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
        }
    }

    private string CopyRealLibrary(string? folder = null)
    {
        var dir = folder ?? _dir;
        Directory.CreateDirectory(dir);
        var copy = Path.Combine(dir, "libLibTorchSharp.so");
        File.Copy(RealTorchSharpNative.Path!, copy, overwrite: true);
        return copy;
    }

    /// <summary>Every libstdc++ version the file asks for, minus the ones given.</summary>
    private static HashSet<string> RequestedExcept(ElfVersionInfo info, params string[] except) =>
        info.RequirementsOn(ElfVersionPatcher.LibStdCxxSoname).Select(r => r.VersionName).Where(v => !except.Contains(v)).ToHashSet(StringComparer.Ordinal);

    private static string Sha256(string path) => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(path)));

    [RealTorchSharpNativeFact]
    public void RealLibrary_RequiresGlibcxx3432_OnlyForTheIostreamMarker()
    {
        var info = ElfVersionPatcher.Inspect(RealTorchSharpNative.Path!);

        Assert.Equal((ushort)62, info.Machine);
        var req = Assert.Single(info.RequirementsOn(ElfVersionPatcher.LibStdCxxSoname), r => r.VersionName == RealTorchSharpNative.MissingVersion);
        Assert.False(req.IsWeak);
        Assert.Equal(new[] { RealTorchSharpNative.MarkerSymbol }, req.Symbols);
        // GLIBCXX_3.4.30 is a genuine dependency (std::condition_variable::wait): the allow-list must not cover it.
        var glibcxx3430 = Assert.Single(info.RequirementsOn(ElfVersionPatcher.LibStdCxxSoname), r => r.VersionName == "GLIBCXX_3.4.30");
        Assert.NotEmpty(glibcxx3430.Symbols);
        Assert.DoesNotContain(RealTorchSharpNative.MarkerSymbol, glibcxx3430.Symbols);
    }

    [RealTorchSharpNativeFact]
    public void RealLibrary_MissingVersion_IsMarkedWeak_InPlace_AndSecondRunIsNoOp()
    {
        var lib = CopyRealLibrary();
        var unixMode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupExecute | UnixFileMode.OtherRead;
        if (!OperatingSystem.IsWindows()) File.SetUnixFileMode(lib, unixMode);
        var stamp = new DateTime(2026, 2, 13, 12, 0, 0, DateTimeKind.Utc);
        File.SetLastWriteTimeUtc(lib, stamp);
        var before = File.ReadAllBytes(lib);
        var available = RequestedExcept(ElfVersionPatcher.Inspect(lib), RealTorchSharpNative.MissingVersion);
        var original = ElfVersionPatcher.Inspect(lib).Requirements.Single(r => r.VersionName == RealTorchSharpNative.MissingVersion);

        var dry = ElfVersionPatcher.WeakenMissingVersions(lib, available, dryRun: true);
        Assert.Equal(PatchStatus.Patched, dry.Status);
        Assert.False(dry.Changed);
        Assert.Equal(before, File.ReadAllBytes(lib));

        var result = ElfVersionPatcher.WeakenMissingVersions(lib, available, dryRun: false);
        _output.WriteLine(result.Message);
        Assert.Equal(PatchStatus.Patched, result.Status);
        Assert.True(result.Changed);
        Assert.Equal(RealTorchSharpNative.MissingVersion, Assert.Single(result.Weakened).VersionName);
        Assert.Empty(result.Unpatchable);
        Assert.Contains(RealTorchSharpNative.MarkerSymbol, result.Message);

        // Exactly one byte changed: the low byte of that vernaux entry's vna_flags.
        var after = File.ReadAllBytes(lib);
        Assert.Equal(before.Length, after.Length);
        var changed = Enumerable.Range(0, before.Length).Where(i => before[i] != after[i]).ToArray();
        Assert.Equal(new[] { (int)original.FlagsFileOffset }, changed);
        Assert.Equal((byte)(before[changed[0]] | ElfVersionPatcher.VerFlagWeak), after[changed[0]]);

        // The result parses and shows the entry weak; nothing else moved.
        var patched = ElfVersionPatcher.Inspect(lib);
        var weak = patched.Requirements.Single(r => r.VersionName == RealTorchSharpNative.MissingVersion);
        Assert.True(weak.IsWeak);
        Assert.Equal(original.VersionIndex, weak.VersionIndex);
        var beforeInfo = ElfVersionPatcher.Inspect(new MemoryStream(before), "before");
        Assert.Equal(
            beforeInfo.Requirements.Where(r => r.VersionName != RealTorchSharpNative.MissingVersion).Select(r => (r.LibraryName, r.VersionName, r.Flags)),
            patched.Requirements.Where(r => r.VersionName != RealTorchSharpNative.MissingVersion).Select(r => (r.LibraryName, r.VersionName, r.Flags)));

        // Mode and timestamp kept (so incremental copies see the file as up to date); no temp file left.
        if (!OperatingSystem.IsWindows()) Assert.Equal(unixMode, File.GetUnixFileMode(lib));
        Assert.Equal(stamp, File.GetLastWriteTimeUtc(lib));
        Assert.Equal(new[] { lib }, Directory.GetFiles(_dir, "*", SearchOption.AllDirectories));

        // Second run: no-op.
        var again = ElfVersionPatcher.WeakenMissingVersions(lib, available, dryRun: false);
        Assert.Equal(PatchStatus.AlreadyPatched, again.Status);
        Assert.False(again.Changed);
        Assert.Equal(RealTorchSharpNative.MissingVersion, Assert.Single(again.AlreadyWeak).VersionName);
        Assert.Equal(after, File.ReadAllBytes(lib));
    }

    [RealTorchSharpNativeFact]
    public void RealLibrary_NothingChanges_WhenTheVersionIsAvailable()
    {
        var lib = CopyRealLibrary();
        var before = File.ReadAllBytes(lib);
        var available = RequestedExcept(ElfVersionPatcher.Inspect(lib));
        Assert.Contains(RealTorchSharpNative.MissingVersion, available);

        var result = ElfVersionPatcher.WeakenMissingVersions(lib, available, dryRun: false);

        Assert.Equal(PatchStatus.NothingMissing, result.Status);
        Assert.False(result.Changed);
        Assert.Empty(result.Missing);
        Assert.Equal(before, File.ReadAllBytes(lib));
    }

    [RealTorchSharpNativeFact]
    public void RealLibrary_GenuinelyNeededVersion_IsReportedUnpatchable_AndNothingChanges()
    {
        var lib = CopyRealLibrary();
        var before = File.ReadAllBytes(lib);
        var available = RequestedExcept(ElfVersionPatcher.Inspect(lib), RealTorchSharpNative.MissingVersion, "GLIBCXX_3.4.30");

        var result = ElfVersionPatcher.WeakenMissingVersions(lib, available, dryRun: false);
        _output.WriteLine(result.Message);

        Assert.Equal(PatchStatus.Unpatchable, result.Status);
        Assert.False(result.Changed);
        Assert.Equal("GLIBCXX_3.4.30", Assert.Single(result.Unpatchable).VersionName);
        Assert.Empty(result.Weakened);
        Assert.Contains("GLIBCXX_3.4.30", result.Message);
        Assert.Equal(before, File.ReadAllBytes(lib));
    }

    [RealTorchSharpNativeFact]
    public void Symlinked_Copy_IsReplaced_AndItsTargetIsNeverWritten()
    {
        if (OperatingSystem.IsWindows()) return; // symlinks need privileges there
        var cacheCopy = CopyRealLibrary(Path.Combine(_dir, "fake-nuget-cache"));
        var outDir = Path.Combine(_dir, "bin");
        Directory.CreateDirectory(outDir);
        var link = Path.Combine(outDir, "libLibTorchSharp.so");
        File.CreateSymbolicLink(link, cacheCopy);
        var cacheHash = Sha256(cacheCopy);
        var available = RequestedExcept(ElfVersionPatcher.Inspect(cacheCopy), RealTorchSharpNative.MissingVersion);

        var result = ElfVersionPatcher.WeakenMissingVersions(link, available, dryRun: false);

        Assert.Equal(PatchStatus.Patched, result.Status);
        Assert.Equal(cacheHash, Sha256(cacheCopy));
        Assert.Null(new FileInfo(link).LinkTarget);
        Assert.True(ElfVersionPatcher.Inspect(link).Requirements.Single(r => r.VersionName == RealTorchSharpNative.MissingVersion).IsWeak);
    }

    [RealTorchSharpNativeFact]
    public void Fuzz_MutatedOrTruncatedCopies_EitherParse_OrThrowElfFormatException()
    {
        var original = File.ReadAllBytes(RealTorchSharpNative.Path!);
        var baseline = ElfVersionPatcher.Inspect(new MemoryStream(original, writable: false), "baseline");
        var available = RequestedExcept(baseline, RealTorchSharpNative.MissingVersion);
        var shoff = (int)BitConverter.ToUInt64(original, 40);
        var shnum = BitConverter.ToUInt16(original, 60);
        var flagOffsets = baseline.Requirements.Select(r => (int)r.FlagsFileOffset).ToArray();
        // Regions: the first 64 KiB (headers, .dynsym, part of .dynstr), the section header table, and .gnu.version_r.
        var regions = new[]
        {
            (Start: 0, End: Math.Min(64 * 1024, original.Length)),
            (Start: shoff, End: Math.Min(original.Length, shoff + shnum * 64)),
            (Start: flagOffsets.Min() - 0x100, End: flagOffsets.Max() + 0x100),
        };

        var rng = new Random(0x5EED);
        var failures = new List<string>();
        int parsed = 0, rejected = 0;
        for (int iteration = 0; iteration < 200; iteration++)
        {
            var buffer = (byte[])original.Clone();
            var length = buffer.Length;
            var what = new List<string>();
            int kind = iteration % 4;
            if (kind is 0 or 2)
            {
                var region = regions[rng.Next(regions.Length)];
                length = rng.Next(3) == 0 ? rng.Next(0, buffer.Length) : rng.Next(region.Start, region.End);
                what.Add($"truncated to {length}");
            }

            if (kind is 1 or 2 or 3)
            {
                int edits = kind == 3 ? 1 : rng.Next(1, 17);
                for (int e = 0; e < edits; e++)
                {
                    var region = regions[rng.Next(regions.Length)];
                    var at = rng.Next(region.Start, region.End);
                    if (kind == 3)
                    {
                        // A whole field set to an extreme or random value.
                        var width = new[] { 2, 4, 8 }[rng.Next(3)];
                        var value = rng.Next(4) switch { 0 => 0UL, 1 => ulong.MaxValue, 2 => (ulong)rng.Next(1, 64), _ => (ulong)rng.NextInt64() };
                        for (int b = 0; b < width && at + b < buffer.Length; b++) buffer[at + b] = (byte)(value >> (8 * b));
                        what.Add($"{width}-byte field at 0x{at:X} = 0x{value:X}");
                    }
                    else
                    {
                        buffer[at] = (byte)rng.Next(256);
                        what.Add($"byte 0x{at:X} = 0x{buffer[at]:X2}");
                    }
                }
            }

            var name = $"fuzz-case-{iteration}";
            try
            {
                var info = ElfVersionPatcher.Inspect(new MemoryStream(buffer, 0, length, writable: false), name);
                ElfVersionPatcher.Analyze(info, available);
                parsed++;
            }
            catch (ElfFormatException e)
            {
                rejected++;
                if (!e.Message.StartsWith(name + ": ", StringComparison.Ordinal) || e.FilePath != name)
                    failures.Add($"{name} ({string.Join(", ", what)}): message does not name the file: {e.Message}");
            }
            catch (Exception e)
            {
                failures.Add($"{name} ({string.Join(", ", what)}): {e.GetType().Name}: {e.Message}\n{e.StackTrace}");
            }
        }

        _output.WriteLine($"parsed {parsed}, rejected {rejected}");
        Assert.True(failures.Count == 0, string.Join("\n\n", failures));
        Assert.True(parsed > 0 && rejected > 0, $"the mutations should produce both outcomes (parsed {parsed}, rejected {rejected})");
    }

    [Fact]
    public void Garbage_GivesAClearException_NamingTheFile()
    {
        var rng = new Random(7);
        var randomBytes = new byte[4096];
        rng.NextBytes(randomBytes);
        var elf32 = new byte[64];
        new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F', 1, 1, 1 }.CopyTo(elf32, 0);
        var noSections = new byte[64];
        new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F', 2, 1, 1 }.CopyTo(noSections, 0);
        var sectionsPastEnd = (byte[])noSections.Clone();
        BitConverter.GetBytes(0x1000UL).CopyTo(sectionsPastEnd, 40); // e_shoff
        BitConverter.GetBytes((ushort)64).CopyTo(sectionsPastEnd, 58); // e_shentsize
        BitConverter.GetBytes((ushort)3).CopyTo(sectionsPastEnd, 60); // e_shnum

        var cases = new (string Name, byte[] Bytes, string Expect)[]
        {
            ("empty.so", Array.Empty<byte>(), "too short"),
            ("short.so", new byte[] { 0x7f, (byte)'E', (byte)'L', (byte)'F' }, "too short"),
            ("random.so", randomBytes, "magic"),
            ("text.so", "INPUT(-lstdc++)\n"u8.ToArray().Concat(new byte[64]).ToArray(), "magic"),
            ("elf32.so", elf32, "ELFCLASS64"),
            ("nosections.so", noSections, "no section header table"),
            ("pastend.so", sectionsPastEnd, "past the end of the file"),
        };
        foreach (var (name, bytes, expect) in cases)
        {
            var path = Path.Combine(_dir, name);
            File.WriteAllBytes(path, bytes);
            var e = Assert.Throws<ElfFormatException>(() => ElfVersionPatcher.Inspect(path));
            Assert.Equal(path, e.FilePath);
            Assert.StartsWith(path + ": ", e.Message);
            Assert.Contains(expect, e.Message);
            Assert.Throws<ElfFormatException>(() => ElfVersionPatcher.WeakenMissingVersions(path, new HashSet<string>(), dryRun: false));
            Assert.Equal(bytes, File.ReadAllBytes(path));
        }
    }

    [LinuxFact]
    public void SystemLibStdCxx_DefinesGlibcxx3430()
    {
        var libStdCxx = ElfVersionPatcher.FindSystemLibStdCxx();
        Assert.False(libStdCxx is null, "FindSystemLibStdCxx found no libstdc++.so.6");
        _output.WriteLine(libStdCxx);

        var defined = ElfVersionPatcher.DefinedVersions(libStdCxx!);

        Assert.Contains("GLIBCXX_3.4.30", defined);
        Assert.Contains("CXXABI_1.3", defined);
        Assert.DoesNotContain(ElfVersionPatcher.LibStdCxxSoname, defined); // the VER_FLG_BASE entry is the soname
        var highest = ElfVersionPatcher.HighestVersion(defined, "GLIBCXX_");
        _output.WriteLine($"highest: {highest}");
        Assert.NotNull(highest);
    }

    [Fact]
    public void HighestVersion_ComparesNumerically()
    {
        Assert.Equal("GLIBCXX_3.4.30", ElfVersionPatcher.HighestVersion(new[] { "GLIBCXX_3.4.9", "GLIBCXX_3.4.30", "GLIBCXX_3.4", "CXXABI_1.3.13", "GLIBCXX_DEBUG_MESSAGE_LENGTH" }, "GLIBCXX_"));
        Assert.Null(ElfVersionPatcher.HighestVersion(Array.Empty<string>(), "GLIBCXX_"));
    }

    /// <summary>
    /// build/TorchSharpNativeFix.targets splices these files into an MSBuild task body through property functions and
    /// [MSBuild]::Unescape, which would rewrite a percent sign followed by two hex digits; a CDATA terminator would end the body.
    /// </summary>
    [Fact]
    public void BuildTaskSources_SurviveMsBuildSplicing()
    {
        string? buildDir = null;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null && buildDir is null; dir = dir.Parent)
        {
            var candidate = Path.Combine(dir.FullName, "build", "ElfVersionPatcher.cs");
            if (File.Exists(candidate)) buildDir = Path.GetDirectoryName(candidate);
        }

        Assert.False(buildDir is null, "build/ElfVersionPatcher.cs not found above " + AppContext.BaseDirectory);
        foreach (var file in new[] { "ElfVersionPatcher.cs", "PatchTorchSharpNativeTask.cs" })
        {
            var text = File.ReadAllText(Path.Combine(buildDir!, file));
            Assert.DoesNotMatch(new Regex("%[0-9A-Fa-f]{2}"), text);
            Assert.DoesNotContain("]]" + ">", text);
        }
    }
}

public sealed class TorchRuntimeTests
{
    [Fact]
    public void Initialize_IsIdempotentAndThreadSafe_AndDescribeReportsVersions()
    {
        Parallel.For(0, 8, _ => TorchRuntime.Initialize());
        TorchRuntime.Initialize();

        Assert.True(TorchRuntime.IsInitialized);
        var description = TorchRuntime.Describe();
        Assert.Contains("TorchSharp 0.107", description);
        Assert.Contains("libtorch 2.", description);
        Assert.Contains("threads", description);
        Assert.Throws<ArgumentOutOfRangeException>(() => TorchRuntime.Initialize(threads: 0));
    }
}
