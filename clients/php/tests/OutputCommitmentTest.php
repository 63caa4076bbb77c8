<?php

declare(strict_types=1);

namespace Plasm\Tests;

use PHPUnit\Framework\TestCase;
use Plasm\OutputCommitment;

/** The values of runtime/output_commitment.ts. */
final class OutputCommitmentTest extends TestCase
{
    public function testEmptyOutputIsOneEmptyChunkWithTheCheckValue(): void
    {
        $this->assertSame([['stdout', '']], OutputCommitment::stdoutChunks(''));
        $this->assertSame('fa9b4526d069cad21010765604a145c410fc8e16505eb38ef843ce1e3370282e', bin2hex(OutputCommitment::ofStdout('')));
    }

    public function testOutputIsCommittedIn64KiBChunks(): void
    {
        $this->assertSame('73c4057bc634393a91ff52324024700baae8533dd29dbe88dcad6a56dc46d797', bin2hex(OutputCommitment::ofStdout('dlroW ,olleH')));
        $big = '';
        for ($i = 0; $i < 65537; $i++) {
            $big .= chr($i % 251);
        }
        $this->assertCount(2, OutputCommitment::stdoutChunks($big));
        $this->assertSame('17912dfe2aa86fb2dd2a08d34cf4f740936d53ff35b97b3e7fd5e368bd209234', bin2hex(OutputCommitment::ofStdout($big)));
    }
}
