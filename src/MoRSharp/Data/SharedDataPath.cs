namespace MoRSharp.Data;

/// <summary>
/// Finds the shared data folder (<c>shared/data</c> beside the repository, holding <c>SOURCES.md</c>) where the evaluation
/// sets, corpora and golden files live: the <c>MORSHARP_SHARED_DATA</c> environment variable if set, else the first
/// <c>shared/data</c> found walking up from the program's folder, then from the current directory.
/// </summary>
public static class SharedDataPath
{
    public const string EnvironmentVariable = "MORSHARP_SHARED_DATA";

    /// <summary>The folder, or null when none is found.</summary>
    public static string? TryLocate()
    {
        var env = Environment.GetEnvironmentVariable(EnvironmentVariable);
        if (!string.IsNullOrEmpty(env)) return env;
        foreach (var start in new[] { AppContext.BaseDirectory, Environment.CurrentDirectory })
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "shared", "data");
                if (File.Exists(Path.Combine(candidate, "SOURCES.md"))) return candidate;
            }
        return null;
    }

    /// <summary>The folder; a <see cref="DirectoryNotFoundException"/> saying how to point at it otherwise.</summary>
    public static string Locate() => TryLocate() ?? throw new DirectoryNotFoundException(
        $"the shared data folder (shared/data with SOURCES.md) was not found above {AppContext.BaseDirectory} or {Environment.CurrentDirectory}; " +
        $"set {EnvironmentVariable} or pass the folder explicitly");
}
