// ElfVersionPatcher: reads the symbol-versioning sections of ELF64 little-endian shared libraries and,
// where it is provably harmless, marks an unsatisfiable libstdc++ version requirement as weak.
//
// Why: TorchSharp 0.107's libLibTorchSharp.so was linked by GCC 13 and carries a version requirement
// GLIBCXX_3.4.32 on libstdc++.so.6. The only symbol bound to it is _ZSt21ios_base_library_initv, a
// link-time marker for <iostream> that nothing calls. Older libstdc++ (GCC 12, Debian 12) stops at
// GLIBCXX_3.4.30, so the dynamic loader refuses the library. With VER_FLG_WEAK on that vernaux entry
// the loader accepts it. See docs/troubleshooting-native.md.
//
// This one file is compiled twice:
//   * into MoRSharp.dll (linked as Native/ElfVersionPatcher.cs) for the runtime fallback in TorchRuntime;
//   * by MSBuild's RoslynCodeTaskFactory (build/TorchSharpNativeFix.targets), against the netstandard 2.0
//     reference assemblies and with no preprocessor symbols defined.
// So: BCL only, netstandard 2.0 APIs outside the #if NET... blocks, C# 10 at most, block-scoped namespace.
// The targets file splices this text into the task body through MSBuild property functions, which
// unescape MSBuild escapes: never write a percent sign directly followed by two hex digits here, and
// never write the CDATA terminator (two closing square brackets followed by a greater-than sign).
#nullable enable
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Linq;
using System.Runtime.InteropServices;
using System.Text;
#if NET5_0_OR_GREATER
using VersionSet = System.Collections.Generic.IReadOnlySet<string>;
#else
using VersionSet = System.Collections.Generic.ISet<string>;
#endif

namespace MoRSharp.Native
{
    /// <summary>Thrown when a file is not a well-formed ELF64 little-endian object (or uses a layout this parser refuses to patch).</summary>
    public sealed class ElfFormatException : Exception
    {
        public ElfFormatException(string filePath, string problem)
            : base(filePath + ": malformed or unsupported ELF file: " + problem)
        {
            FilePath = filePath;
            Problem = problem;
        }

        /// <summary>The file (or display name) that failed to parse.</summary>
        public string FilePath { get; }

        /// <summary>What is wrong, without the file name.</summary>
        public string Problem { get; }
    }

    /// <summary>Outcome of <see cref="ElfVersionPatcher.WeakenMissingVersions"/>.</summary>
    public enum PatchStatus
    {
        /// <summary>Every libstdc++.so.6 version the library asks for is available; nothing to do.</summary>
        NothingMissing,
        /// <summary>The missing versions are all already marked weak (a previous run patched the file).</summary>
        AlreadyPatched,
        /// <summary>Missing versions were marked weak (or would be, in a dry run).</summary>
        Patched,
        /// <summary>At least one missing version is used by real symbols; the file was left unchanged.</summary>
        Unpatchable,
    }

    /// <summary>One vernaux entry of .gnu.version_r: "this library needs version X of file Y".</summary>
    public sealed class VersionRequirement
    {
        public VersionRequirement(string libraryName, string versionName, ushort versionIndex, ushort flags, long flagsFileOffset, IReadOnlyList<string> symbols)
        {
            LibraryName = libraryName;
            VersionName = versionName;
            VersionIndex = versionIndex;
            Flags = flags;
            FlagsFileOffset = flagsFileOffset;
            Symbols = symbols;
        }

        /// <summary>The needed file (vn_file), e.g. libstdc++.so.6.</summary>
        public string LibraryName { get; }

        /// <summary>The version name (vna_name), e.g. GLIBCXX_3.4.32.</summary>
        public string VersionName { get; }

        /// <summary>The version index (vna_other) that .gnu.version entries refer to.</summary>
        public ushort VersionIndex { get; }

        /// <summary>vna_flags.</summary>
        public ushort Flags { get; }

        /// <summary>True when VER_FLG_WEAK is set: the loader tolerates the version being absent.</summary>
        public bool IsWeak => (Flags & ElfVersionPatcher.VerFlagWeak) != 0;

        /// <summary>File offset of the 16-bit vna_flags field.</summary>
        public long FlagsFileOffset { get; }

        /// <summary>Names of the dynamic symbols whose .gnu.version index (masked with 0x7fff) is <see cref="VersionIndex"/>.</summary>
        public IReadOnlyList<string> Symbols { get; }

        public override string ToString() =>
            VersionName + " (from " + LibraryName + ", index " + VersionIndex.ToString(CultureInfo.InvariantCulture) +
            ", flags 0x" + Flags.ToString("X", CultureInfo.InvariantCulture) + (IsWeak ? " WEAK" : "") + ")";
    }

    /// <summary>The symbol-versioning view of one ELF file.</summary>
    public sealed class ElfVersionInfo
    {
        public ElfVersionInfo(string filePath, ushort machine, IReadOnlyList<VersionRequirement> requirements, VersionSet definedVersions, int dynamicSymbolCount)
        {
            FilePath = filePath;
            Machine = machine;
            Requirements = requirements;
            DefinedVersions = definedVersions;
            DynamicSymbolCount = dynamicSymbolCount;
        }

        public string FilePath { get; }

        /// <summary>e_machine (62 = x86-64, 183 = AArch64).</summary>
        public ushort Machine { get; }

        /// <summary>All vernaux entries of .gnu.version_r, in file order.</summary>
        public IReadOnlyList<VersionRequirement> Requirements { get; }

        /// <summary>Version names defined in .gnu.version_d, excluding the VER_FLG_BASE entry (the soname).</summary>
        public VersionSet DefinedVersions { get; }

        public int DynamicSymbolCount { get; }

        /// <summary>The vernaux entries needed from the given file, e.g. libstdc++.so.6.</summary>
        public IEnumerable<VersionRequirement> RequirementsOn(string libraryName) =>
            Requirements.Where(r => string.Equals(r.LibraryName, libraryName, StringComparison.Ordinal));
    }

    /// <summary>What <see cref="ElfVersionPatcher.WeakenMissingVersions"/> found and did; <see cref="Message"/> is meant for a log line.</summary>
    public sealed class PatchResult
    {
        public PatchResult(string filePath, bool dryRun, PatchStatus status, IReadOnlyList<VersionRequirement> missing,
            IReadOnlyList<VersionRequirement> weakened, IReadOnlyList<VersionRequirement> alreadyWeak, IReadOnlyList<VersionRequirement> unpatchable)
        {
            FilePath = filePath;
            DryRun = dryRun;
            Status = status;
            Missing = missing;
            Weakened = weakened;
            AlreadyWeak = alreadyWeak;
            Unpatchable = unpatchable;
            Message = BuildMessage();
        }

        public string FilePath { get; }
        public bool DryRun { get; }
        public PatchStatus Status { get; }

        /// <summary>Requirements on libstdc++.so.6 whose version is not in the available set.</summary>
        public IReadOnlyList<VersionRequirement> Missing { get; }

        /// <summary>Entries that were (or, in a dry run, would be) marked weak. Flags shown are the values before patching.</summary>
        public IReadOnlyList<VersionRequirement> Weakened { get; }

        /// <summary>Missing entries that already carried VER_FLG_WEAK.</summary>
        public IReadOnlyList<VersionRequirement> AlreadyWeak { get; }

        /// <summary>Missing entries used by symbols outside the allow-list: the library genuinely needs a newer libstdc++.</summary>
        public IReadOnlyList<VersionRequirement> Unpatchable { get; }

        /// <summary>True when the file on disk was modified by this call.</summary>
        public bool Changed => Status == PatchStatus.Patched && !DryRun;

        public string Message { get; }

        public override string ToString() => Message;

        private string BuildMessage()
        {
            var name = FilePath;
            switch (Status)
            {
                case PatchStatus.NothingMissing:
                    return name + ": every " + ElfVersionPatcher.LibStdCxxSoname + " version it needs is available; nothing to do.";
                case PatchStatus.AlreadyPatched:
                    return name + ": already patched (" + Names(AlreadyWeak) + " marked weak).";
                case PatchStatus.Patched:
                    return name + ": " + (DryRun ? "would mark " : "marked ") + Names(Weakened) + " (needed from " +
                           ElfVersionPatcher.LibStdCxxSoname + ") as weak; " +
                           (Weakened.Count == 1 ? "it is" : "they are") + " only used by " + SymbolList(Weakened) +
                           ", a link-time marker that nothing calls.";
                default:
                    var sb = new StringBuilder();
                    sb.Append(name).Append(": needs from ").Append(ElfVersionPatcher.LibStdCxxSoname).Append(' ');
                    sb.Append(string.Join("; ", Unpatchable.Take(3).Select(r =>
                        r.VersionName + " (for " + r.Symbols.Count.ToString(CultureInfo.InvariantCulture) + " symbol(s), e.g. " +
                        string.Join(", ", r.Symbols.Take(2)) + ")")));
                    if (Unpatchable.Count > 3) sb.Append("; and ").Append((Unpatchable.Count - 3).ToString(CultureInfo.InvariantCulture)).Append(" more versions");
                    sb.Append(". These are real dependencies, so the file was left unchanged; it needs a newer libstdc++ that provides ")
                      .Append(Unpatchable.Count == 1 ? "this version." : "these versions.");
                    return sb.ToString();
            }
        }

        private static string Names(IEnumerable<VersionRequirement> reqs) => string.Join(", ", reqs.Select(r => r.VersionName));

        private static string SymbolList(IEnumerable<VersionRequirement> reqs)
        {
            var symbols = reqs.SelectMany(r => r.Symbols).Distinct(StringComparer.Ordinal).ToList();
            return symbols.Count == 0 ? "no symbol at all" : string.Join(", ", symbols);
        }
    }

    /// <summary>
    /// Parses ELF64 little-endian files (section headers, .dynsym, .dynstr, .gnu.version, .gnu.version_r,
    /// .gnu.version_d) and marks libstdc++ version requirements weak when only allow-listed symbols use them.
    /// Every offset read from the file is bounds-checked; malformed input raises <see cref="ElfFormatException"/>.
    /// </summary>
    public static class ElfVersionPatcher
    {
        public const string LibStdCxxSoname = "libstdc++.so.6";
        public const ushort VerFlagBase = 0x1;
        public const ushort VerFlagWeak = 0x2;

        /// <summary>
        /// Symbols that may be the only users of a missing libstdc++ version. std::ios_base_library_init() is
        /// referenced by every object that includes iostream under GCC 13+, but it is never called: it exists
        /// only to pull the versioned dependency in. It has no relocation, so a weak version is safe.
        /// </summary>
        public static IReadOnlyCollection<string> HarmlessSymbols { get; } = new[] { "_ZSt21ios_base_library_initv" };

        /// <summary>Version names the shared library defines (.gnu.version_d, without the soname entry). Empty when it has no version definitions.</summary>
        public static VersionSet DefinedVersions(string sharedLibPath) => Inspect(sharedLibPath).DefinedVersions;

        /// <summary>Parses the versioning information of an ELF file on disk.</summary>
        public static ElfVersionInfo Inspect(string path)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            var fullPath = Path.GetFullPath(path);
            using (var fs = new FileStream(fullPath, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
            {
                return Inspect(fs, fullPath);
            }
        }

        /// <summary>Parses the versioning information of an ELF image held in a seekable stream; <paramref name="displayName"/> is used in error messages.</summary>
        public static ElfVersionInfo Inspect(Stream stream, string displayName)
        {
            if (stream == null) throw new ArgumentNullException(nameof(stream));
            return new ElfParser(stream, displayName ?? "(stream)").Parse();
        }

        /// <summary>
        /// Decides what <see cref="WeakenMissingVersions"/> would do, without touching any file.
        /// </summary>
        public static PatchResult Analyze(ElfVersionInfo info, VersionSet available, bool dryRun = true)
        {
            if (info == null) throw new ArgumentNullException(nameof(info));
            if (available == null) throw new ArgumentNullException(nameof(available));

            var missing = info.RequirementsOn(LibStdCxxSoname).Where(r => !available.Contains(r.VersionName)).ToList();
            var alreadyWeak = missing.Where(r => r.IsWeak).ToList();
            var candidates = missing.Where(r => !r.IsWeak).ToList();
            var unpatchable = candidates.Where(r => r.Symbols.Any(s => !HarmlessSymbols.Contains(s))).ToList();
            var patchable = candidates.Where(r => !unpatchable.Contains(r)).ToList();

            PatchStatus status;
            if (missing.Count == 0) status = PatchStatus.NothingMissing;
            else if (unpatchable.Count > 0) status = PatchStatus.Unpatchable;
            else if (patchable.Count > 0) status = PatchStatus.Patched;
            else status = PatchStatus.AlreadyPatched;

            // When any missing version is genuinely needed the library cannot load anyway: change nothing.
            var weakened = status == PatchStatus.Patched ? patchable : new List<VersionRequirement>();
            return new PatchResult(info.FilePath, dryRun, status, missing, weakened, alreadyWeak, unpatchable);
        }

        /// <summary>
        /// For each vernaux entry under libstdc++.so.6 whose version is not in <paramref name="available"/>:
        /// if only allow-listed symbols (<see cref="HarmlessSymbols"/>) use that version index, set VER_FLG_WEAK
        /// on it; otherwise report it as unpatchable and change nothing. The file is rewritten through a temporary
        /// file in the same folder and an atomic rename (so a hard link or symlink into a package cache is
        /// replaced, never written through); its permissions and last-write time are kept, so incremental copies
        /// (size + timestamp) treat the patched copy as up to date. Idempotent.
        /// </summary>
        public static PatchResult WeakenMissingVersions(string libPath, VersionSet available, bool dryRun)
        {
            if (libPath == null) throw new ArgumentNullException(nameof(libPath));
            if (available == null) throw new ArgumentNullException(nameof(available));
            var fullPath = Path.GetFullPath(libPath);

            var plan = Analyze(Inspect(fullPath), available, dryRun);
            if (dryRun || plan.Status != PatchStatus.Patched) return plan;
            return ApplyPatch(fullPath, available);
        }

        private static PatchResult ApplyPatch(string fullPath, VersionSet available)
        {
            var directory = Path.GetDirectoryName(fullPath);
            if (string.IsNullOrEmpty(directory)) throw new IOException(fullPath + ": cannot determine the containing folder.");
            var tempPath = Path.Combine(directory, "." + Path.GetFileName(fullPath) + "." + Guid.NewGuid().ToString("N") + ".morsharp-patch.tmp");
            var lastWriteUtc = File.GetLastWriteTimeUtc(fullPath);
            try
            {
                // File.Copy follows a symlink and copies the content and (on Unix) the permission bits.
                File.Copy(fullPath, tempPath, false);
                var mode = TryGetUnixMode(tempPath);
                const int ownerWrite = 0x80; // S_IWUSR
                if (mode.HasValue && (mode.Value & ownerWrite) == 0) TrySetUnixMode(tempPath, mode.Value | ownerWrite);

                PatchResult result;
                using (var fs = new FileStream(tempPath, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
                {
                    // Re-plan on the copy itself, in case the file changed since it was analysed.
                    result = Analyze(Inspect(fs, fullPath), available, dryRun: false);
                    if (result.Status != PatchStatus.Patched) return result;
                    foreach (var req in result.Weakened)
                    {
                        var flags = (ushort)(req.Flags | VerFlagWeak);
                        fs.Position = req.FlagsFileOffset;
                        fs.WriteByte((byte)(flags & 0xff));
                        fs.WriteByte((byte)(flags >> 8));
                    }
                    fs.Flush(true);
                }

                if (mode.HasValue && (mode.Value & ownerWrite) == 0) TrySetUnixMode(tempPath, mode.Value);
                File.SetLastWriteTimeUtc(tempPath, lastWriteUtc);
#if NETCOREAPP3_0_OR_GREATER
                File.Move(tempPath, fullPath, true); // rename(2) on Unix: atomic
#else
                File.Replace(tempPath, fullPath, null); // rename(2) on Unix: atomic
#endif
                return result;
            }
            finally
            {
                try
                {
                    if (File.Exists(tempPath)) File.Delete(tempPath);
                }
                catch (IOException)
                {
                }
                catch (UnauthorizedAccessException)
                {
                }
            }
        }

        private static int? TryGetUnixMode(string path)
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) return null;
#if NET7_0_OR_GREATER
            return (int)File.GetUnixFileMode(path);
#else
            var getter = typeof(File).GetMethod("GetUnixFileMode", new[] { typeof(string) });
            if (getter == null) return null;
            return Convert.ToInt32(getter.Invoke(null, new object[] { path }), CultureInfo.InvariantCulture);
#endif
        }

        private static void TrySetUnixMode(string path, int mode)
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) return;
#if NET7_0_OR_GREATER
            File.SetUnixFileMode(path, (UnixFileMode)mode);
#else
            var getter = typeof(File).GetMethod("GetUnixFileMode", new[] { typeof(string) });
            if (getter == null) return;
            var modeType = getter.ReturnType;
            var setter = typeof(File).GetMethod("SetUnixFileMode", new[] { typeof(string), modeType });
            if (setter == null) return;
            setter.Invoke(null, new object[] { path, Enum.ToObject(modeType, mode) });
#endif
        }

        /// <summary>
        /// Locates the libstdc++.so.6 the dynamic loader would pick for this process: LD_LIBRARY_PATH entries, then
        /// the ld.so cache (ldconfig -p), then the usual multiarch and lib64 folders. Only ELF64 files for the
        /// process architecture are accepted. Returns null when none is found (or not on Linux).
        /// </summary>
        public static string? FindSystemLibStdCxx()
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return null;
            var machine = ProcessMachine();
            foreach (var candidate in LibStdCxxCandidates())
            {
                if (IsElf64For(candidate, machine)) return candidate;
            }

            return null;
        }

        private static IEnumerable<string> LibStdCxxCandidates()
        {
            var ldLibraryPath = Environment.GetEnvironmentVariable("LD_LIBRARY_PATH");
            if (!string.IsNullOrEmpty(ldLibraryPath))
            {
                foreach (var dir in ldLibraryPath!.Split(new[] { ':', ';' }, StringSplitOptions.RemoveEmptyEntries))
                {
                    yield return Path.Combine(dir, LibStdCxxSoname);
                }
            }

            foreach (var path in LdconfigEntries(LibStdCxxSoname)) yield return path;

            var usual = new[]
            {
                "/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib/aarch64-linux-gnu",
                "/usr/lib64", "/lib64", "/usr/lib", "/lib",
            };
            foreach (var dir in usual) yield return Path.Combine(dir, LibStdCxxSoname);
        }

        private static List<string> LdconfigEntries(string soname)
        {
            var result = new List<string>();
            var output = RunLdconfig();
            if (output == null) return result;
            foreach (var rawLine in output.Split('\n'))
            {
                // "	libstdc++.so.6 (libc6,x86-64) => /lib/x86_64-linux-gnu/libstdc++.so.6"
                var line = rawLine.Trim();
                if (!line.StartsWith(soname + " ", StringComparison.Ordinal)) continue;
                var arrow = line.IndexOf("=>", StringComparison.Ordinal);
                if (arrow < 0) continue;
                var path = line.Substring(arrow + 2).Trim();
                if (path.Length > 0) result.Add(path);
            }

            return result;
        }

        private static string? RunLdconfig()
        {
            foreach (var exe in new[] { "/sbin/ldconfig", "/usr/sbin/ldconfig", "ldconfig" })
            {
                if (exe.StartsWith("/", StringComparison.Ordinal) && !File.Exists(exe)) continue;
                try
                {
                    var psi = new ProcessStartInfo(exe, "-p")
                    {
                        UseShellExecute = false,
                        RedirectStandardOutput = true,
                        RedirectStandardError = true,
                        CreateNoWindow = true,
                    };
                    using (var process = Process.Start(psi))
                    {
                        if (process == null) continue;
                        var stdout = process.StandardOutput.ReadToEndAsync();
                        _ = process.StandardError.ReadToEndAsync(); // drain it so ldconfig cannot block
                        if (!process.WaitForExit(5000))
                        {
                            try
                            {
                                process.Kill();
                            }
                            catch (InvalidOperationException)
                            {
                            }

                            continue;
                        }

                        if (process.ExitCode == 0 && stdout.Wait(2000)) return stdout.Result;
                    }
                }
                catch (System.ComponentModel.Win32Exception)
                {
                    // not installed / not on PATH
                }
                catch (InvalidOperationException)
                {
                }
                catch (IOException)
                {
                }
            }

            return null;
        }

        private static ushort? ProcessMachine()
        {
            switch (RuntimeInformation.ProcessArchitecture.ToString())
            {
                case "X64": return 62;
                case "Arm64": return 183;
                case "RiscV64": return 243;
                case "LoongArch64": return 258;
                case "Ppc64le": return 21;
                case "S390x": return 22;
                default: return null;
            }
        }

        /// <summary>True when <paramref name="path"/> is an ELF64 little-endian file for <paramref name="machine"/> (any machine when null).</summary>
        public static bool IsElf64For(string path, ushort? machine)
        {
            try
            {
                if (!File.Exists(path)) return false;
                var header = new byte[20];
                using (var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
                {
                    int got = 0;
                    while (got < header.Length)
                    {
                        int n = fs.Read(header, got, header.Length - got);
                        if (n <= 0) return false;
                        got += n;
                    }
                }

                if (header[0] != 0x7f || header[1] != (byte)'E' || header[2] != (byte)'L' || header[3] != (byte)'F') return false;
                if (header[4] != 2 || header[5] != 1) return false;
                var fileMachine = (ushort)(header[18] | (header[19] << 8));
                return machine == null || fileMachine == machine.Value;
            }
            catch (IOException)
            {
                return false;
            }
            catch (UnauthorizedAccessException)
            {
                return false;
            }
        }

        /// <summary>The highest version among names like GLIBCXX_3.4.30 with the given prefix (numeric comparison), or null.</summary>
        public static string? HighestVersion(IEnumerable<string> versions, string prefix)
        {
            string? best = null;
            int[]? bestParts = null;
            foreach (var v in versions)
            {
                if (!v.StartsWith(prefix, StringComparison.Ordinal)) continue;
                var parts = ParseVersionParts(v.Substring(prefix.Length));
                if (parts == null) continue;
                if (bestParts == null || CompareParts(parts, bestParts) > 0)
                {
                    best = v;
                    bestParts = parts;
                }
            }

            return best;
        }

        private static int[]? ParseVersionParts(string s)
        {
            var pieces = s.Split('.');
            var parts = new int[pieces.Length];
            for (int i = 0; i < pieces.Length; i++)
            {
                if (!int.TryParse(pieces[i], NumberStyles.None, CultureInfo.InvariantCulture, out parts[i])) return null;
            }

            return parts;
        }

        private static int CompareParts(int[] a, int[] b)
        {
            for (int i = 0; i < Math.Max(a.Length, b.Length); i++)
            {
                int x = i < a.Length ? a[i] : 0, y = i < b.Length ? b[i] : 0;
                if (x != y) return x.CompareTo(y);
            }

            return 0;
        }

        /// <summary>Bounds-checked ELF64 LE reader for the sections this patcher needs.</summary>
        private sealed class ElfParser
        {
            private const uint ShtStrtab = 3;
            private const uint ShtDynamic = 6;
            private const uint ShtNobits = 8;
            private const uint ShtDynsym = 11;
            private const uint ShtGnuVerdef = 0x6ffffffd;
            private const uint ShtGnuVerneed = 0x6ffffffe;
            private const uint ShtGnuVersym = 0x6fffffff;
            private const ulong DtVerneed = 0x6ffffffe;
            private const uint PtLoad = 1;
            private const int MaxReadBytes = 256 * 1024 * 1024;

            private readonly Stream _stream;
            private readonly string _name;
            private readonly ulong _length;
            private readonly Dictionary<uint, byte[]> _stringTables = new Dictionary<uint, byte[]>();
            private Section[] _sections = new Section[0];

            private struct Section
            {
                public uint Index;
                public string Name;
                public uint Type;
                public ulong Addr;
                public ulong Offset;
                public ulong Size;
                public uint Link;
                public uint Info;
                public ulong EntSize;
            }

            public ElfParser(Stream stream, string name)
            {
                if (!stream.CanRead || !stream.CanSeek) throw new ArgumentException("The stream must be readable and seekable.", nameof(stream));
                _stream = stream;
                _name = name;
                _length = (ulong)stream.Length;
            }

            private ElfFormatException Fail(string problem) => new ElfFormatException(_name, problem);

            private static string Hex(ulong v) => "0x" + v.ToString("X", CultureInfo.InvariantCulture);

            private string Describe(Section s) => s.Name.Length > 0 ? "section " + s.Index.ToString(CultureInfo.InvariantCulture) + " (" + s.Name + ")" : "section " + s.Index.ToString(CultureInfo.InvariantCulture);

            public ElfVersionInfo Parse()
            {
                if (_length < 64) throw Fail("the file is " + _length.ToString(CultureInfo.InvariantCulture) + " bytes long, too short for an ELF64 header (64 bytes)");
                var h = Read(0, 64, "the ELF header");
                if (h[0] != 0x7f || h[1] != (byte)'E' || h[2] != (byte)'L' || h[3] != (byte)'F') throw Fail("missing ELF magic number (7F 45 4C 46); not an ELF file");
                if (h[4] != 2) throw Fail("ELF class " + h[4].ToString(CultureInfo.InvariantCulture) + " is not supported (only ELFCLASS64)");
                if (h[5] != 1) throw Fail("data encoding " + h[5].ToString(CultureInfo.InvariantCulture) + " is not supported (only little-endian, ELFDATA2LSB)");
                if (h[6] != 1) throw Fail("unsupported ELF identification version " + h[6].ToString(CultureInfo.InvariantCulture));

                ushort machine = U16(h, 18);
                ulong phoff = U64(h, 32);
                ulong shoff = U64(h, 40);
                ushort phentsize = U16(h, 54);
                uint phnum = U16(h, 56);
                ushort shentsize = U16(h, 58);
                uint shnum = U16(h, 60);
                uint shstrndx = U16(h, 62);

                if (shoff == 0) throw Fail("the file has no section header table (e_shoff is 0)");
                if (shentsize != 64) throw Fail("e_shentsize is " + shentsize.ToString(CultureInfo.InvariantCulture) + ", expected 64 for ELF64");

                if (shnum == 0 || shstrndx == 0xffff || phnum == 0xffff)
                {
                    // Extended numbering: the real values live in section header 0.
                    var s0 = Read(shoff, 64, "section header 0");
                    if (shnum == 0)
                    {
                        ulong n = U64(s0, 32);
                        if (n == 0) throw Fail("the section header table is empty");
                        if (n > uint.MaxValue) throw Fail("the extended section count " + n.ToString(CultureInfo.InvariantCulture) + " is implausible");
                        shnum = (uint)n;
                    }

                    if (shstrndx == 0xffff) shstrndx = U32(s0, 40);
                    if (phnum == 0xffff) phnum = U32(s0, 44);
                }

                ulong tableSize = (ulong)shnum * 64UL;
                var table = Read(shoff, tableSize, "the section header table (" + shnum.ToString(CultureInfo.InvariantCulture) + " entries)");
                var nameOffsets = new uint[shnum];
                _sections = new Section[shnum];
                for (uint i = 0; i < shnum; i++)
                {
                    int o = checked((int)(i * 64));
                    nameOffsets[i] = U32(table, o);
                    _sections[i] = new Section
                    {
                        Index = i,
                        Name = "",
                        Type = U32(table, o + 4),
                        Addr = U64(table, o + 16),
                        Offset = U64(table, o + 24),
                        Size = U64(table, o + 32),
                        Link = U32(table, o + 40),
                        Info = U32(table, o + 44),
                        EntSize = U64(table, o + 56),
                    };
                }

                if (shstrndx != 0)
                {
                    if (shstrndx >= shnum) throw Fail("e_shstrndx " + shstrndx.ToString(CultureInfo.InvariantCulture) + " is out of range (" + shnum.ToString(CultureInfo.InvariantCulture) + " sections)");
                    var strSection = _sections[shstrndx];
                    if (strSection.Type != ShtStrtab) throw Fail("the section name table (section " + shstrndx.ToString(CultureInfo.InvariantCulture) + ") is not SHT_STRTAB");
                    var names = ReadSection(strSection, "the section name string table");
                    for (uint i = 0; i < shnum; i++)
                    {
                        _sections[i].Name = CString(names, nameOffsets[i], "the name of section " + i.ToString(CultureInfo.InvariantCulture), "the section name string table");
                    }
                }

                int verneedIndex = FindUnique(ShtGnuVerneed, ".gnu.version_r (SHT_GNU_verneed)");
                int versymIndex = FindUnique(ShtGnuVersym, ".gnu.version (SHT_GNU_versym)");
                int verdefIndex = FindUnique(ShtGnuVerdef, ".gnu.version_d (SHT_GNU_verdef)");
                int dynamicIndex = FindUnique(ShtDynamic, ".dynamic (SHT_DYNAMIC)");

                // Symbols by version index, from .gnu.version + .dynsym.
                var symbolsByVersion = new Dictionary<ushort, List<string>>();
                int symbolCount = 0;
                if (versymIndex >= 0)
                {
                    var versymSection = _sections[versymIndex];
                    if (versymSection.Link == 0 || versymSection.Link >= shnum)
                        throw Fail("sh_link of " + Describe(versymSection) + " (" + versymSection.Link.ToString(CultureInfo.InvariantCulture) + ") does not name a section");
                    var dynsymSection = _sections[versymSection.Link];
                    if (dynsymSection.Type != ShtDynsym) throw Fail("sh_link of " + Describe(versymSection) + " points to " + Describe(dynsymSection) + ", which is not SHT_DYNSYM");
                    if (dynsymSection.EntSize != 24) throw Fail(Describe(dynsymSection) + " has entry size " + dynsymSection.EntSize.ToString(CultureInfo.InvariantCulture) + ", expected 24");
                    if (dynsymSection.Size % 24 != 0) throw Fail(Describe(dynsymSection) + " size " + Hex(dynsymSection.Size) + " is not a multiple of 24");
                    ulong nsyms = dynsymSection.Size / 24;
                    if (versymSection.Size / 2 < nsyms)
                        throw Fail(Describe(versymSection) + " has " + (versymSection.Size / 2).ToString(CultureInfo.InvariantCulture) + " entries but " + Describe(dynsymSection) + " has " + nsyms.ToString(CultureInfo.InvariantCulture));
                    if (versymSection.Type == ShtNobits || dynsymSection.Type == ShtNobits) throw Fail("symbol version sections have no file contents");
                    var versym = Read(versymSection.Offset, nsyms * 2, Describe(versymSection));
                    var dynsym = ReadSection(dynsymSection, Describe(dynsymSection));
                    var dynstr = StringTable(dynsymSection.Link, Describe(dynsymSection));
                    symbolCount = (int)nsyms;
                    for (int i = 1; i < symbolCount; i++)
                    {
                        var version = (ushort)(U16(versym, i * 2) & 0x7fff);
                        if (version < 2) continue; // 0 = local, 1 = global/unversioned
                        var name = CString(dynstr, U32(dynsym, i * 24), "the name of dynamic symbol " + i.ToString(CultureInfo.InvariantCulture), "the dynamic string table");
                        List<string>? list;
                        if (!symbolsByVersion.TryGetValue(version, out list))
                        {
                            list = new List<string>();
                            symbolsByVersion.Add(version, list);
                        }

                        list.Add(name);
                    }
                }

                var requirements = new List<VersionRequirement>();
                if (verneedIndex >= 0)
                {
                    var vn = _sections[verneedIndex];
                    if (versymIndex < 0) throw Fail("it has " + Describe(vn) + " but no .gnu.version section, so the symbols using each version are unknown");
                    ReadVerneed(vn, symbolsByVersion, requirements);
                    if (dynamicIndex >= 0) CheckVerneedMatchesLoaderView(vn, _sections[dynamicIndex], phoff, phentsize, phnum);
                }

                var defined = new HashSet<string>(StringComparer.Ordinal);
                if (verdefIndex >= 0) ReadVerdef(_sections[verdefIndex], defined);

                return new ElfVersionInfo(_name, machine, requirements, defined, symbolCount);
            }

            private void ReadVerneed(Section vn, Dictionary<ushort, List<string>> symbolsByVersion, List<VersionRequirement> requirements)
            {
                var what = Describe(vn);
                var strtab = StringTable(vn.Link, what);
                var data = ReadSection(vn, what);
                ulong off = 0;
                uint entries = 0;
                while (true)
                {
                    int o = Need(data, off, 16, "verneed entry at offset " + Hex(off) + " of " + what);
                    ushort version = U16(data, o);
                    if (version != 1) throw Fail("verneed entry at offset " + Hex(off) + " of " + what + " has vn_version " + version.ToString(CultureInfo.InvariantCulture) + ", expected 1");
                    ushort count = U16(data, o + 2);
                    uint file = U32(data, o + 4);
                    uint aux = U32(data, o + 8);
                    uint next = U32(data, o + 12);
                    var libraryName = CString(strtab, file, "vn_file of the verneed entry at offset " + Hex(off), "the dynamic string table");
                    if (count == 0) throw Fail("verneed entry for " + libraryName + " has vn_cnt 0");

                    ulong a = off + aux;
                    for (int k = 0; k < count; k++)
                    {
                        int ao = Need(data, a, 16, "vernaux entry " + k.ToString(CultureInfo.InvariantCulture) + " of " + libraryName + " (offset " + Hex(a) + " of " + what + ")");
                        ushort flags = U16(data, ao + 4);
                        ushort index = U16(data, ao + 6);
                        uint nameOffset = U32(data, ao + 8);
                        uint auxNext = U32(data, ao + 12);
                        var versionName = CString(strtab, nameOffset, "vna_name of vernaux entry " + k.ToString(CultureInfo.InvariantCulture) + " of " + libraryName, "the dynamic string table");
                        List<string>? symbols;
                        symbolsByVersion.TryGetValue((ushort)(index & 0x7fff), out symbols);
                        requirements.Add(new VersionRequirement(libraryName, versionName, index, flags, checked((long)(vn.Offset + a + 4)),
                            symbols != null ? symbols.ToArray() : new string[0]));
                        if (auxNext == 0)
                        {
                            if (k != count - 1)
                                throw Fail("verneed entry for " + libraryName + " declares " + count.ToString(CultureInfo.InvariantCulture) + " vernaux entries but the chain ends after " + (k + 1).ToString(CultureInfo.InvariantCulture));
                            break;
                        }

                        a += auxNext;
                    }

                    entries++;
                    if (next == 0) break;
                    off += next;
                }

                if (vn.Info != 0 && vn.Info != entries)
                    throw Fail(what + " declares " + vn.Info.ToString(CultureInfo.InvariantCulture) + " verneed entries (sh_info) but the chain has " + entries.ToString(CultureInfo.InvariantCulture));
            }

            private void ReadVerdef(Section vd, HashSet<string> defined)
            {
                var what = Describe(vd);
                var strtab = StringTable(vd.Link, what);
                var data = ReadSection(vd, what);
                ulong off = 0;
                while (true)
                {
                    int o = Need(data, off, 20, "verdef entry at offset " + Hex(off) + " of " + what);
                    ushort version = U16(data, o);
                    if (version != 1) throw Fail("verdef entry at offset " + Hex(off) + " of " + what + " has vd_version " + version.ToString(CultureInfo.InvariantCulture) + ", expected 1");
                    ushort flags = U16(data, o + 2);
                    ushort count = U16(data, o + 6);
                    uint aux = U32(data, o + 12);
                    uint next = U32(data, o + 16);
                    if (count == 0) throw Fail("verdef entry at offset " + Hex(off) + " of " + what + " has no name (vd_cnt 0)");
                    int ao = Need(data, off + aux, 8, "verdaux entry of the verdef entry at offset " + Hex(off) + " of " + what);
                    var name = CString(strtab, U32(data, ao), "vda_name of the verdef entry at offset " + Hex(off), "the dynamic string table");
                    if ((flags & VerFlagBase) == 0) defined.Add(name);
                    if (next == 0) break;
                    off += next;
                }
            }

            /// <summary>
            /// The loader reads version needs through DT_VERNEED (a virtual address), not through section headers.
            /// Make sure both views agree, so the byte we patch is the byte the loader reads.
            /// </summary>
            private void CheckVerneedMatchesLoaderView(Section vn, Section dynamic, ulong phoff, ushort phentsize, uint phnum)
            {
                if (dynamic.Type == ShtNobits) return;
                var dyn = ReadSection(dynamic, Describe(dynamic));
                ulong? verneedAddr = null;
                for (int o = 0; o + 16 <= dyn.Length; o += 16)
                {
                    ulong tag = U64(dyn, o);
                    if (tag == 0) break; // DT_NULL
                    if (tag == DtVerneed)
                    {
                        verneedAddr = U64(dyn, o + 8);
                        break;
                    }
                }

                if (verneedAddr == null) throw Fail("it has " + Describe(vn) + " but its dynamic section has no DT_VERNEED entry");
                if (phoff == 0 || phnum == 0) throw Fail("it has a dynamic section but no program headers");
                if (phentsize != 56) throw Fail("e_phentsize is " + phentsize.ToString(CultureInfo.InvariantCulture) + ", expected 56 for ELF64");
                var ph = Read(phoff, (ulong)phnum * 56UL, "the program header table");
                ulong addr = verneedAddr.Value;
                for (int i = 0; i < (int)phnum; i++)
                {
                    int o = i * 56;
                    if (U32(ph, o) != PtLoad) continue;
                    ulong offset = U64(ph, o + 8), vaddr = U64(ph, o + 16), filesz = U64(ph, o + 32);
                    if (addr < vaddr || addr - vaddr >= filesz) continue;
                    ulong delta = addr - vaddr;
                    if (offset > ulong.MaxValue - delta) throw Fail("PT_LOAD segment " + i.ToString(CultureInfo.InvariantCulture) + " has an impossible file offset");
                    ulong fileOffset = offset + delta;
                    if (fileOffset != vn.Offset)
                        throw Fail("DT_VERNEED (" + Hex(addr) + ") maps to file offset " + Hex(fileOffset) + " but " + Describe(vn) + " is at " + Hex(vn.Offset) + "; the section headers do not describe what the loader reads");
                    return;
                }

                throw Fail("DT_VERNEED (" + Hex(addr) + ") is not inside any PT_LOAD segment");
            }

            private int FindUnique(uint type, string what)
            {
                int found = -1;
                for (int i = 0; i < _sections.Length; i++)
                {
                    if (_sections[i].Type != type) continue;
                    if (found >= 0) throw Fail("it has more than one " + what + " section (" + found.ToString(CultureInfo.InvariantCulture) + " and " + i.ToString(CultureInfo.InvariantCulture) + ")");
                    found = i;
                }

                return found;
            }

            private byte[] StringTable(uint index, string owner)
            {
                byte[]? cached;
                if (_stringTables.TryGetValue(index, out cached)) return cached;
                if (index == 0 || index >= _sections.Length) throw Fail("sh_link of " + owner + " (" + index.ToString(CultureInfo.InvariantCulture) + ") does not name a section");
                var s = _sections[index];
                if (s.Type != ShtStrtab) throw Fail("sh_link of " + owner + " points to " + Describe(s) + ", which is not SHT_STRTAB");
                var data = ReadSection(s, Describe(s));
                _stringTables[index] = data;
                return data;
            }

            private byte[] ReadSection(Section s, string what)
            {
                if (s.Type == ShtNobits) throw Fail(what + " has no contents in the file (SHT_NOBITS)");
                return Read(s.Offset, s.Size, what);
            }

            private byte[] Read(ulong offset, ulong size, string what)
            {
                if (offset > _length || size > _length - offset)
                    throw Fail(what + " (offset " + Hex(offset) + ", size " + Hex(size) + ") extends past the end of the file (size " + Hex(_length) + ")");
                if (size > MaxReadBytes) throw Fail(what + " is " + Hex(size) + " bytes, more than this parser reads (" + Hex(MaxReadBytes) + ")");
                var buffer = new byte[(int)size];
                _stream.Position = (long)offset;
                int got = 0;
                while (got < buffer.Length)
                {
                    int n = _stream.Read(buffer, got, buffer.Length - got);
                    if (n <= 0) throw Fail("unexpected end of file while reading " + what);
                    got += n;
                }

                return buffer;
            }

            private int Need(byte[] data, ulong offset, int size, string what)
            {
                if (offset > (ulong)data.Length || (ulong)data.Length - offset < (ulong)size)
                    throw Fail(what + " (" + size.ToString(CultureInfo.InvariantCulture) + " bytes at offset " + Hex(offset) + ") lies outside its section (size " + Hex((ulong)data.Length) + ")");
                return (int)offset;
            }

            private string CString(byte[] table, uint offset, string what, string tableName)
            {
                if (offset >= (uint)table.Length)
                    throw Fail(what + ": string offset " + Hex(offset) + " is outside " + tableName + " (size " + Hex((ulong)table.Length) + ")");
                int end = Array.IndexOf(table, (byte)0, (int)offset);
                if (end < 0) throw Fail(what + ": the string at offset " + Hex(offset) + " of " + tableName + " is not NUL-terminated");
                return Encoding.UTF8.GetString(table, (int)offset, end - (int)offset);
            }

            private static ushort U16(byte[] b, int o) => (ushort)(b[o] | (b[o + 1] << 8));

            private static uint U32(byte[] b, int o) => (uint)(b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24));

            private static ulong U64(byte[] b, int o) => U32(b, o) | ((ulong)U32(b, o + 4) << 32);
        }
    }
}
