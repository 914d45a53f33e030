namespace MoRSharp.Tests;

/// <summary>Finds ../shared/data (beside the repository), where the real corpora and golden files live; they are never copied into the project.</summary>
public static class SharedData
{
    public static string Root { get; } = Locate();

    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);

    private static string Locate()
    {
        var env = Environment.GetEnvironmentVariable("MORSHARP_SHARED_DATA");
        if (!string.IsNullOrEmpty(env)) return env;
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = System.IO.Path.Combine(dir.FullName, "shared", "data");
            if (Directory.Exists(candidate) && File.Exists(System.IO.Path.Combine(candidate, "SOURCES.md"))) return candidate;
        }
        throw new DirectoryNotFoundException("shared/data not found above " + AppContext.BaseDirectory + "; set MORSHARP_SHARED_DATA");
    }
}
