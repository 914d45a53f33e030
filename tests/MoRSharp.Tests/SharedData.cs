namespace MoRSharp.Tests;

/// <summary>Finds ../shared/data (beside the repository), where the real corpora and golden files live; they are never copied into the project.</summary>
public static class SharedData
{
    public static string Root { get; } = MoRSharp.Data.SharedDataPath.Locate();

    public static string Path(string relative) => System.IO.Path.Combine(Root, relative);
}
