using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.RegularExpressions;
using TorchSharp;

namespace MoRSharp.Native;

/// <summary>
/// One place that brings up TorchSharp's native backend (CPU) with a clear error when it cannot load.
/// On Linux it first loads libLibTorchSharp.so itself: if the dynamic loader refuses it because the system
/// libstdc++ lacks a harmless version (GLIBCXX_3.4.32, see docs/troubleshooting-native.md) and the file sits in
/// the application folder and is writable, it patches that copy with <see cref="ElfVersionPatcher"/> and retries
/// once. This covers applications that consume MoRSharp without its MSBuild targets. The check has to happen
/// before TorchSharp's own loader runs: a failed <c>torch</c> type initializer cannot be retried in-process.
/// </summary>
public static class TorchRuntime
{
    public const string TroubleshootingHint = "See README.md, section \"Troubleshooting\" (docs/troubleshooting-native.md).";

    /// <summary>Set to <c>0</c> or <c>false</c> to stop <see cref="Initialize"/> from patching the application's copy at run time.</summary>
    public const string RuntimePatchVariable = "MORSHARP_PATCH_TORCHSHARP_NATIVE";

    private const string NativeLibraryFile = "libLibTorchSharp.so";

    // ".../libstdc++.so.6: version `GLIBCXX_3.4.32' not found (required by /app/runtimes/linux-x64/native/libLibTorchSharp.so)"
    private static readonly Regex MissingVersion = new(
        @"(?<provider>/[^\s:]*libstdc\+\+\.so[^\s:]*): version `(?<version>[^']+)' not found \(required by (?<by>[^)]+)\)",
        RegexOptions.CultureInvariant);

    private static readonly object Gate = new();
    private static volatile bool _initialized;
    private static InvalidOperationException? _permanentFailure;

    /// <summary>True once <see cref="Initialize"/> has succeeded.</summary>
    public static bool IsInitialized => _initialized;

    /// <summary>
    /// Loads TorchSharp's native backend for CPU (idempotent, thread-safe) and, when <paramref name="threads"/> is
    /// given, sets the intra-op thread count. Throws <see cref="InvalidOperationException"/> with an explanation when
    /// the native library cannot be loaded.
    /// </summary>
    public static void Initialize(int? threads = null)
    {
        if (threads is { } requested && requested < 1)
            throw new ArgumentOutOfRangeException(nameof(threads), requested, "The thread count must be at least 1.");

        lock (Gate)
        {
            if (!_initialized)
            {
                if (_permanentFailure is not null) throw _permanentFailure;
                NativeAllocator.Configure();
                LoadNativeBackend();
                _initialized = true;
            }

            if (threads is { } n && torch.get_num_threads() != n) torch.set_num_threads(n);
        }
    }

    /// <summary>TorchSharp and libtorch versions plus thread settings, for logs and <c>mor --version</c>-style output. Initializes TorchSharp if needed.</summary>
    public static string Describe()
    {
        var assembly = typeof(torch).Assembly;
        var torchSharpVersion = assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion
                                ?? assembly.GetName().Version?.ToString() ?? "?";
        try
        {
            Initialize();
        }
        catch (InvalidOperationException e)
        {
            return $"TorchSharp {torchSharpVersion}: native backend not available ({FirstLine(e.Message)})";
        }

        return $"TorchSharp {torchSharpVersion}, libtorch {torch.__version__} (CPU), threads {torch.get_num_threads()}, " +
               $"interop threads {torch.get_num_interop_threads()}, freed memory {(NativeAllocator.KeepsFreedMemory ? "kept for reuse" : "returned to the OS")}, " +
               $"{RuntimeInformation.OSDescription} {RuntimeInformation.ProcessArchitecture}";
    }

    private static void LoadNativeBackend()
    {
        string? diagnosis = OperatingSystem.IsLinux() ? PreloadOnLinux() : null;
        try
        {
            torch.InitializeDeviceType(DeviceType.CPU);
        }
        catch (Exception e) when (IsNativeLoadFailure(e, diagnosis))
        {
            // torch's static constructor has failed for good; later calls get the same answer.
            var failure = new InvalidOperationException(Explain(e, diagnosis), e);
            if (e is TypeInitializationException || e.InnerException is TypeInitializationException) _permanentFailure = failure;
            throw failure;
        }
    }

    /// <summary>
    /// Loads libLibTorchSharp.so from the application's native folder before TorchSharp does. Returns null when it
    /// loaded (or could not be located, leaving the search to TorchSharp); otherwise the loader's explanation.
    /// </summary>
    private static string? PreloadOnLinux()
    {
        var library = LocateLibTorchSharp();
        if (library is null || TryLoad(library, out var error)) return null;

        var match = MissingVersion.Match(error);
        if (!match.Success) return error;

        var failing = match.Groups["by"].Value.Trim();
        var provider = match.Groups["provider"].Value;
        if (RuntimePatchDisabled())
            return error + Environment.NewLine + $"({RuntimePatchVariable} is set, so MoRSharp did not patch {failing}.)";
        if (!IsInsideApplicationFolder(failing))
            return error + Environment.NewLine + $"({failing} is outside the application folder {AppContext.BaseDirectory}, so MoRSharp did not patch it.)";

        try
        {
            var libStdCxx = File.Exists(provider) ? provider : ElfVersionPatcher.FindSystemLibStdCxx();
            if (libStdCxx is null) return error + Environment.NewLine + "(libstdc++.so.6 could not be located, so MoRSharp did not patch anything.)";
            var result = ElfVersionPatcher.WeakenMissingVersions(failing, ElfVersionPatcher.DefinedVersions(libStdCxx), dryRun: false);
            Console.Error.WriteLine($"MoRSharp: the dynamic loader refused TorchSharp's native library ({provider} lacks {match.Groups["version"].Value}). {result.Message}");
            if (result.Status is not (PatchStatus.Patched or PatchStatus.AlreadyPatched))
                return error + Environment.NewLine + result.Message;
            if (TryLoad(library, out var retryError))
            {
                Console.Error.WriteLine("MoRSharp: it loads now. Only the application's copy was patched; MoRSharp's build targets do this at build time.");
                return null;
            }

            return retryError;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ElfFormatException)
        {
            return error + Environment.NewLine + $"MoRSharp could not patch {failing}: {e.Message}";
        }
    }

    /// <summary>Loads the library (it stays loaded for TorchSharp to find) or returns the loader's error text.</summary>
    private static bool TryLoad(string library, out string error)
    {
        try
        {
            NativeLibrary.Load(library);
            error = "";
            return true;
        }
        catch (Exception e) when (e is DllNotFoundException or BadImageFormatException)
        {
            error = e.Message;
            return false;
        }
    }

    /// <summary>The libLibTorchSharp.so the runtime would bind to: the host's native search folders (from the .deps.json), then the usual app-relative places.</summary>
    private static string? LocateLibTorchSharp()
    {
        var folders = new List<string>();
        if (AppContext.GetData("NATIVE_DLL_SEARCH_DIRECTORIES") is string searchDirs)
            folders.AddRange(searchDirs.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries));
        var rid = "linux-" + RuntimeInformation.ProcessArchitecture.ToString().ToLowerInvariant();
        foreach (var baseDir in new[] { AppContext.BaseDirectory, Path.GetDirectoryName(typeof(torch).Assembly.Location) })
        {
            if (string.IsNullOrEmpty(baseDir)) continue;
            folders.Add(Path.Combine(baseDir, "runtimes", rid, "native"));
            folders.Add(baseDir);
        }

        return folders.Select(f => Path.Combine(f, NativeLibraryFile)).FirstOrDefault(File.Exists);
    }

    private static bool RuntimePatchDisabled()
    {
        var value = Environment.GetEnvironmentVariable(RuntimePatchVariable)?.Trim();
        return value is "0" || string.Equals(value, "false", StringComparison.OrdinalIgnoreCase);
    }

    private static bool IsInsideApplicationFolder(string path)
    {
        var app = Path.GetFullPath(AppContext.BaseDirectory);
        if (!app.EndsWith(Path.DirectorySeparatorChar)) app += Path.DirectorySeparatorChar;
        return Path.GetFullPath(path).StartsWith(app, StringComparison.Ordinal);
    }

    private static bool IsNativeLoadFailure(Exception e, string? diagnosis)
    {
        if (e is not (DllNotFoundException or TypeInitializationException or NotSupportedException or EntryPointNotFoundException)) return false;
        if (diagnosis is not null) return true;
        var text = AllMessages(e);
        return text.Contains("GLIBCXX", StringComparison.Ordinal) || text.Contains("LibTorchSharp", StringComparison.OrdinalIgnoreCase);
    }

    private static string Explain(Exception e, string? diagnosis)
    {
        var confirmed = (diagnosis ?? AllMessages(e)).Contains("GLIBCXX_", StringComparison.Ordinal);
        var sb = new StringBuilder();
        sb.Append("TorchSharp's native library (libLibTorchSharp.so) could not be loaded. ");
        sb.Append(confirmed
            ? "Cause: the system libstdc++.so.6 lacks a symbol version the library asks for. "
            : "The usual cause on Linux: the system libstdc++.so.6 lacks a symbol version the library asks for. ");
        sb.Append("TorchSharp 0.107 was built with GCC 13 and requires GLIBCXX_3.4.32, which GCC 12's libstdc++ ");
        sb.Append("(Debian 12, up to GLIBCXX_3.4.30) does not have. The only symbol bound to that version, ");
        sb.Append("std::ios_base_library_init(), is never called, so MoRSharp's build marks the requirement weak in the ");
        sb.Append("output copy of the library. Fix: rebuild with MoRSharp's build targets (dotnet build / run / test / publish ");
        sb.Append("patches the copy in the output folder; do not disable MoRSharpPatchTorchSharpNative), or install a libstdc++ from GCC 13 or later. ");
        sb.Append(TroubleshootingHint);
        if (!string.IsNullOrWhiteSpace(diagnosis))
            sb.Append(Environment.NewLine).Append("Loader error: ").Append(diagnosis.Trim());
        sb.Append(Environment.NewLine).Append("Original error: ").Append(AllMessages(e));
        return sb.ToString();
    }

    private static string AllMessages(Exception e)
    {
        var sb = new StringBuilder();
        for (Exception? x = e; x is not null; x = x.InnerException)
        {
            if (sb.Length > 0) sb.Append(" ---> ");
            sb.Append(x.GetType().Name).Append(": ").Append(x.Message.Trim());
        }

        return sb.ToString();
    }

    private static string FirstLine(string text)
    {
        var end = text.IndexOfAny(new[] { '\r', '\n' });
        return end < 0 ? text : text[..end];
    }
}
