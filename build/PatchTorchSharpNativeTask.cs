// MSBuild task used by build/TorchSharpNativeFix.targets. RoslynCodeTaskFactory compiles it together with
// build/ElfVersionPatcher.cs (that file's text comes first, so: no top-level using directives here, C# 10,
// netstandard 2.0 APIs, and none of the character sequences listed at the top of ElfVersionPatcher.cs).
namespace MoRSharp.Native.Build
{
    using System;
    using System.Collections.Generic;
    using System.IO;
    using System.Linq;
    using System.Runtime.InteropServices;
    using Microsoft.Build.Framework;

    /// <summary>
    /// Marks unsatisfiable, harmless libstdc++ version requirements of the given output copies of
    /// libLibTorchSharp.so as weak (see ElfVersionPatcher). Never fails the build: problems become warnings.
    /// </summary>
    public sealed class PatchTorchSharpNative : Microsoft.Build.Utilities.Task
    {
        /// <summary>The output (or publish) copies of libLibTorchSharp.so to check.</summary>
        [Required]
        public ITaskItem[] Files { get; set; } = new ITaskItem[0];

        /// <summary>$(NuGetPackageRoot): files under it are never modified.</summary>
        public string NuGetPackageRoot { get; set; } = "";

        /// <summary>Override for the libstdc++.so.6 to compare against (default: the one the loader would use).</summary>
        public string LibStdCxxPath { get; set; } = "";

        /// <summary>Where the warnings send people.</summary>
        public string HelpText { get; set; } = "See README.md, section \"Troubleshooting\" (docs/troubleshooting-native.md).";

        [Output]
        public ITaskItem[] PatchedFiles { get; private set; } = new ITaskItem[0];

        /// <summary>Files that need nothing (more): patched now, patched before, nothing missing, or another architecture.</summary>
        [Output]
        public ITaskItem[] VerifiedFiles { get; private set; } = new ITaskItem[0];

        public override bool Execute()
        {
            if (!RuntimeInformation.IsOSPlatform(OSPlatform.Linux)) return true;

            var libStdCxx = string.IsNullOrWhiteSpace(LibStdCxxPath) ? MoRSharp.Native.ElfVersionPatcher.FindSystemLibStdCxx() : LibStdCxxPath;
            if (libStdCxx == null || !File.Exists(libStdCxx))
            {
                Log.LogMessage(MessageImportance.Low, "MoRSharp: no system libstdc++.so.6 found; TorchSharp native libraries left as they are.");
                return true;
            }

            MoRSharp.Native.ElfVersionInfo stdInfo;
            try
            {
                stdInfo = MoRSharp.Native.ElfVersionPatcher.Inspect(libStdCxx);
            }
            catch (Exception e) when (e is MoRSharp.Native.ElfFormatException || e is IOException || e is UnauthorizedAccessException)
            {
                Log.LogWarning(null, "MORNATIVE002", null, libStdCxx, 0, 0, 0, 0,
                    "MoRSharp: could not read the version definitions of " + libStdCxx + " (" + e.Message + "); TorchSharp native libraries were not checked. " + HelpText);
                return true;
            }

            var available = stdInfo.DefinedVersions;
            if (available.Count == 0)
            {
                Log.LogMessage(MessageImportance.Low, "MoRSharp: " + libStdCxx + " defines no symbol versions; nothing to check.");
                return true;
            }

            var highestVersion = MoRSharp.Native.ElfVersionPatcher.HighestVersion(available, "GLIBCXX_");
            var provides = highestVersion != null ? " provides up to " + highestVersion + "." : " defines no GLIBCXX_ version.";
            var nugetRoot = NormalizeDir(NuGetPackageRoot);
            var patched = new List<ITaskItem>();
            var verified = new List<ITaskItem>();
            foreach (var path in Files.Select(f => f.GetMetadata("FullPath")).Where(p => !string.IsNullOrEmpty(p)).Distinct(StringComparer.Ordinal))
            {
                if (!File.Exists(path)) continue;
                if (nugetRoot.Length > 0 && path.StartsWith(nugetRoot, StringComparison.Ordinal))
                {
                    Log.LogMessage(MessageImportance.Low, "MoRSharp: " + path + " is inside the NuGet package folder; not touching it.");
                    continue;
                }

                try
                {
                    var info = MoRSharp.Native.ElfVersionPatcher.Inspect(path);
                    if (info.Machine != stdInfo.Machine)
                    {
                        Log.LogMessage(MessageImportance.Low, "MoRSharp: " + path + " is for another architecture (e_machine " + info.Machine + ") than " + libStdCxx + "; skipped.");
                        verified.Add(new Microsoft.Build.Utilities.TaskItem(path));
                        continue;
                    }

                    var result = MoRSharp.Native.ElfVersionPatcher.WeakenMissingVersions(path, available, dryRun: false);
                    switch (result.Status)
                    {
                        case MoRSharp.Native.PatchStatus.Patched:
                            Log.LogMessage(MessageImportance.High,
                                "MoRSharp: " + result.Message + " System " + libStdCxx + provides);
                            patched.Add(new Microsoft.Build.Utilities.TaskItem(path));
                            verified.Add(new Microsoft.Build.Utilities.TaskItem(path));
                            break;
                        case MoRSharp.Native.PatchStatus.Unpatchable:
                            Log.LogWarning(null, "MORNATIVE001", null, path, 0, 0, 0, 0,
                                "MoRSharp: " + result.Message + " " + libStdCxx + provides + " TorchSharp will fail to load on this machine. " + HelpText);
                            break;
                        default:
                            Log.LogMessage(MessageImportance.Low, "MoRSharp: " + result.Message);
                            verified.Add(new Microsoft.Build.Utilities.TaskItem(path));
                            break;
                    }
                }
                catch (Exception e) when (e is MoRSharp.Native.ElfFormatException || e is IOException || e is UnauthorizedAccessException)
                {
                    Log.LogWarning(null, "MORNATIVE002", null, path, 0, 0, 0, 0,
                        "MoRSharp: could not check or patch " + path + ": " + e.Message + " " + HelpText);
                }
            }

            PatchedFiles = patched.ToArray();
            VerifiedFiles = verified.ToArray();
            return true;
        }

        private static string NormalizeDir(string dir)
        {
            if (string.IsNullOrWhiteSpace(dir)) return "";
            var full = Path.GetFullPath(dir);
            return full.EndsWith("/", StringComparison.Ordinal) ? full : full + "/";
        }
    }
}
