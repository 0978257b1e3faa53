import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isDeltaDiskError } from '../../lib/errors.js';
import { isDeviceBacked, parseVmdkDescriptor } from '../../lib/vm/vmdk-descriptor.js';
import { descriptorText } from '../../fixtures/make-fixtures.js';
import { propertyRuns } from '../helpers/temp-dir.js';

const parse = (s: string) => parseVmdkDescriptor(Buffer.from(s, 'utf8'));
const base = (extents: string[], extra = '') => `# Disk DescriptorFile\nversion=1\nCID=1a2b3c4d\nparentCID=ffffffff\ncreateType="vmfs"\n${extra}${extents.join('\n')}\nddb.adapterType = "lsilogic"\n`;

describe('parseVmdkDescriptor', () => {
  it('reads header, extents and DDB of a child descriptor with CRLF and a malformed longContentID', () => {
    const d = parse(
      descriptorText({ cid: '0A9B8C7D', parentCid: 'e1d2c3b4', createType: 'vmfsSparse', hint: 'Büro Server 2 – Ω.vmdk', extents: ['RW 32768 VMFSSPARSE "Büro Server 2 – Ω-000001-delta.vmdk"'], ddb: { longContentID: 'f3b2 0a9b8c7d' }, eol: '\r\n' }),
    );
    expect(d).toMatchObject({ version: 1, cid: '0a9b8c7d', parentCid: 'e1d2c3b4', createType: 'vmfsSparse', parentFileNameHint: 'Büro Server 2 – Ω.vmdk', capacity: 32768 * 512 });
    expect(d.extents).toEqual([{ access: 'RW', sectors: 32768, type: 'VMFSSPARSE', file: 'Büro Server 2 – Ω-000001-delta.vmdk', offset: 0 }]);
    expect(d.ddb.get('longcontentid')).toBe('f3b2 0a9b8c7d');
  });

  it('decodes the character set its encoding= line declares (VMDK descriptors say encoding, not .encoding)', () => {
    const latin = parseVmdkDescriptor(Buffer.from(base(['RW 100 FLAT "Caf\u00e9.vmdk" 0'], 'encoding="windows-1252"\n'), 'latin1'));
    expect(latin.encoding).toBe('windows-1252');
    expect(latin.extents[0]!.file).toBe('Caf\u00e9.vmdk');
    const [head, tail] = base(['RW 100 FLAT "@.vmdk" 0'], 'encoding="GBK"\n').split('@');
    const gbk = parseVmdkDescriptor(Buffer.concat([Buffer.from(head!), Buffer.from([0xd6, 0xd0]), Buffer.from(tail!)]));
    expect(gbk.encoding).toBe('GBK');
    expect(gbk.extents[0]!.file).toBe('\u4e2d.vmdk');
    expect(parse(base(['RW 100 FLAT "Caf\u00e9.vmdk" 0'])).encoding).toBe('UTF-8');
    expect(() => parseVmdkDescriptor(Buffer.from(base(['RW 100 FLAT "a.vmdk" 0'], 'encoding="no-such-charset"\n')))).toThrow(/unknown character set/);
  });

  it('sums split extents, allows ZERO extents and spaces in names; flags device-backed disks', () => {
    const d = parse(base(['RW 4192256 SPARSE "big disk-s001.vmdk"', 'RDONLY 4192256 FLAT "big disk-f002.vmdk" 2048', 'NOACCESS 100 ZERO']));
    expect(d.capacity).toBe((4192256 * 2 + 100) * 512);
    expect(d.extents[1]).toMatchObject({ access: 'RDONLY', offset: 2048 });
    expect(isDeviceBacked(d)).toBe(false);
    expect(isDeviceBacked(parse(base(['RW 100 VMFSRDM "lun-rdm.vmdk"'])))).toBe(true);
  });

  it('applies the per-type extent rules and refuses anything it cannot read exactly', () => {
    const bad: [string, RegExp][] = [
      [base(['RW 100 FLAT "a.vmdk"']), /needs an offset/],
      [base(['RW 100 VMFS "a.vmdk" 0']), /takes no offset/],
      [base(['RW 100 ZERO "a.vmdk"']), /names no file/],
      [base(['RW 100 SPARSE']), /needs a quoted file name/],
      [base(['RW 100 SPARSE ""']), /needs a quoted file name/],
      [base(['RW 100 QCOW2 "a"']), /unknown extent type/],
      [base(['WR 100 FLAT "a" 0']), /unknown extent access/],
      [base(['RW 0 FLAT "a" 0']), /out of range/],
      [base(['RW 99999999999999999 FLAT "a" 0']), /out of range/],
      [base(['RW 100 FLAT "a"b" 0']), /not a comment/],
      [base(['rm -rf /']), /not a comment/],
      [base(['RW 100 FLAT "a" 0'], 'CID=12345678\n'), /given twice/],
      [base([]), /lists no extent/],
      ['CID=1\nversion=1\n', /first statement must be version=/],
      ['', /empty/],
      [base(['RW 100 FLAT "a" 0']).replace('CID=1a2b3c4d', 'CID=xyz'), /not 1 to 8 hex digits/],
      [base(['RW 100 FLAT "a" 0']).replace('CID=1a2b3c4d', 'CID=123456789'), /not 1 to 8 hex digits/],
      [base(['RW 100 FLAT "a" 0']).replace('createType="vmfs"\n', ''), /no createType/],
    ];
    for (const [text, why] of bad) expect(() => parse(text), text).toThrow(why);
    expect(() => parse(base(['RW 1 FLAT "a" 0']).replace('version=1', 'version=4'))).toThrow(expect.objectContaining({ code: 'UNSUPPORTED_VERSION' }));
  });

  it('reads CIDs without leading zeros as QEMU writes them (found with qemu-img: CID=6efc13)', () => {
    const d = parse(base(['RW 100 FLAT "a" 0']).replace('CID=1a2b3c4d', 'CID=6efc13').replace('parentCID=ffffffff', 'parentCID=0'));
    expect(d.cid).toBe('006efc13');
    expect(d.parentCid).toBe('00000000');
  });

  it('strips the NUL padding of embedded descriptors but refuses NULs inside', () => {
    const text = base(['RW 100 SPARSE "a.vmdk"']);
    expect(parseVmdkDescriptor(Buffer.concat([Buffer.from(text), Buffer.alloc(4000)])).extents).toHaveLength(1);
    expect(() => parseVmdkDescriptor(Buffer.from(text.replace('ddb', '\0ddb')))).toThrow(/NUL/);
  });

  it('bounds size, extent count and capacity', () => {
    expect(() => parseVmdkDescriptor(Buffer.alloc(1024 * 1024 + 1, 0x20))).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
    const lines = Array.from({ length: 2 ** 10 }, () => 'RW 2199023255552 ZERO');
    expect(() => parse(base(lines))).toThrow(expect.objectContaining({ code: 'LIMIT_EXCEEDED' }));
  });

  it('any mutation of a valid descriptor: parsed or a typed error', () => {
    const valid = Buffer.from(base(['RW 100 FLAT "a.vmdk" 0', 'RW 100 SPARSE "b.vmdk"']));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(valid.length - 1), fc.integer({ min: 0, max: 255 })), { maxLength: 8 }), fc.nat(valid.length), (flips, cut) => {
        const b = Buffer.from(valid.subarray(0, cut));
        for (const [at, v] of flips) if (at < b.length) b[at] = v;
        try {
          const d = parseVmdkDescriptor(b);
          expect(d.capacity).toBeGreaterThan(0);
        } catch (err) {
          expect(isDeltaDiskError(err)).toBe(true);
        }
      }),
      { numRuns: propertyRuns(500) },
    );
  });
});
