// MoRSharp benchmarks: long measurements that are not tests. Each prints a markdown table and the command that made it.
//   dotnet run -c Release --project bench/MoRSharp.Bench -- train-speed [--preset micro-vanilla] [--batch 8] [--seq 256] [--steps 4] [--rounds 5] [--loss-steps 150] [--bf16 0]
//   dotnet run -c Release --project bench/MoRSharp.Bench -- serve-load [--clients 32] [--seconds 60] [--max-tokens 32] [--preset micro-mor-expert | --model DIR] [--threads N]
//   dotnet run -c Release --project bench/MoRSharp.Bench -- eval-speed --model DIR [--task hellaswag] [--limit 2000] [--batches 1,8,32] [--chunk 250] [--threads N]
//   dotnet run -c Release --project bench/MoRSharp.Bench -- projection-paths [--rounds 5] [--threads 2]
//   dotnet run -c Release --project bench/MoRSharp.Bench -- decode-floor [--rounds 5] [--tokens 200] [--threads 2]
//   dotnet run -c Release --project bench/MoRSharp.Bench -- skip [--hidden 256] [--block 4] [--seqs 128,256,512] [--tokens 2048] [--vocab 512] [--rounds 7] [--steps 1] [--threads N]
using MoRSharp.Bench;

return args.Length == 0 ? Usage() : args[0] switch
{
    "skip" => ComputeSkippingBenchmark.Run(args[1..]),
    "train-speed" => TrainSpeedBenchmark.Run(args[1..]),
    "serve-load" => ServeLoadBenchmark.Run(args[1..]),
    "eval-speed" => EvalSpeedBenchmark.Run(args[1..]),
    "projection-paths" => ProjectionPathsBenchmark.Run(args[1..]),
    "decode-floor" => DecodeFloorBenchmark.Run(args[1..]),
    _ => Usage(),
};

static int Usage()
{
    Console.Error.WriteLine("usage: MoRSharp.Bench train-speed [--preset P] [--batch B] [--seq T] [--steps S] [--rounds R] [--loss-steps N] [--bf16 0] [--threads N]");
    Console.Error.WriteLine("       MoRSharp.Bench serve-load [--clients C] [--seconds S] [--max-tokens N] [--preset P | --model DIR] [--threads N]");
    Console.Error.WriteLine("       MoRSharp.Bench eval-speed --model DIR [--task T] [--limit N] [--batches 1,8,32] [--chunk N] [--data-dir PATH] [--threads N]");
    Console.Error.WriteLine("       MoRSharp.Bench projection-paths [--rounds R] [--threads N]");
    Console.Error.WriteLine("       MoRSharp.Bench decode-floor [--rounds R] [--tokens N] [--threads N]");
    Console.Error.WriteLine("       MoRSharp.Bench skip [--hidden D] [--block B] [--seqs T1,T2,..] [--tokens N] [--vocab V] [--rounds R] [--steps S] [--threads N]");
    return 2;
}
