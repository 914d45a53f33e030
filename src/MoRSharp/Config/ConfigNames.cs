namespace MoRSharp.Config;

/// <summary>Maps the snake_case names used in config.json onto enums, with a clear error for anything else.</summary>
public static class ConfigNames
{
    public static T Parse<T>(string? value, string field) where T : struct, Enum
    {
        foreach (var v in Enum.GetValues<T>())
            if (string.Equals(ToName(v), value, StringComparison.Ordinal)) return v;
        throw new ConfigException($"{field}: '{value}' is not one of {string.Join("|", Enum.GetValues<T>().Select(v => ToName(v)))}");
    }

    /// <summary>MiddleCycle → middle_cycle.</summary>
    public static string ToName<T>(T value) where T : struct, Enum
    {
        var s = value.ToString();
        var sb = new System.Text.StringBuilder();
        for (int i = 0; i < s.Length; i++)
        {
            if (char.IsUpper(s[i]) && i > 0) sb.Append('_');
            sb.Append(char.ToLowerInvariant(s[i]));
        }
        return sb.ToString();
    }
}

/// <summary>An invalid configuration; the message names the field and what was expected.</summary>
public sealed class ConfigException(string message) : Exception(message);
