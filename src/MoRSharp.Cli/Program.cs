// mor — the MoRSharp command-line tool. Commands live in Commands/ (one file each); see CommandLine.cs.
return MoRSharp.Cli.CommandLine.Run(args, Console.Out, Console.Error);
